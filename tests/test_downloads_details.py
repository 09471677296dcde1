# ruff: noqa: F811  (the fixtures are imported from test_downloads_quick and used by name)
"""Pulls from the fake Hub, in detail: the words a user reads when something goes wrong, what
goes to the server (endpoint, revision, token, timeouts, retries), what is reported while it
runs and what ends up on disk and in the registry. The quick lane's companion of
``test_downloads_quick.py``: the same small runnable GGUF and fixtures."""

from __future__ import annotations

from pathlib import Path

from assistant.models.downloads import Downloader
from tests.hub_server import FakeHub
from tests.model_files import write_small_runnable
from tests.support import smollm2_path
from tests.test_downloads_quick import (  # noqa: F401  (fixtures)
    REPO,
    downloader,
    hub,
    store,
    tiny,
)

# --- what the user reads -----------------------------------------------------------------------


def test_a_file_whose_header_has_no_name_is_named_after_the_file(
    hub: FakeHub, downloader: Downloader, tmp_path: Path
) -> None:
    """Not after the file's sha256, which is what the bytes are called while they arrive."""
    nameless = write_small_runnable(
        tmp_path / "Nameless-7B.Q4_0.gguf", smollm2_path(), without=("general.name",)
    )
    hub.add_file(REPO, nameless.name, nameless)
    assert downloader.pull(REPO, nameless.name).model.name == "Nameless-7B.Q4_0"
