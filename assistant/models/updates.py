"""Has the Hub a different file than the one installed? Asked without downloading it.

For each installed model that came from a Hub repository, one HEAD on the file's ``/resolve``
URL at the repository's current head (``main``) gives the commit, the size and the LFS sha256;
they are compared with the installed file's. Nothing is downloaded, nothing installed: a changed
file is only reported (a catalog model's file is pinned, so getting the new one is a choice the
catalog, or the user with ``models pull REPO --file FILE``, makes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from assistant.errors import (
    AssistantError,
    HubOfflineError,
    HubUnreachableError,
    TLSError,
)
from assistant.models import hub
from assistant.models.hub_cache import DEFAULT_REVISION
from assistant.models.store import InstalledModel

UpdateStatus = Literal["current", "changed", "unknown", "failed", "not_from_hub"]

# Failures that say nothing about one model but about the way to the Hub: the check stops at
# the first one instead of repeating it for every model.
_WAY_TO_THE_HUB = (HubUnreachableError, HubOfflineError, TLSError)


@dataclass(frozen=True)
class UpdateCheck:
    """What the Hub's head has for one installed model. ``note`` says it in a sentence."""

    model: InstalledModel
    status: UpdateStatus
    note: str
    remote_sha256: str | None = None
    remote_size: int | None = None
    remote_commit: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.model.id,
            "repo": self.model.repo,
            "filename": self.model.filename,
            "status": self.status,
            "note": self.note,
            "installed_sha256": self.model.sha256,
            "installed_size": self.model.size_bytes,
            "installed_commit": self.model.revision,
            "remote_sha256": self.remote_sha256,
            "remote_size": self.remote_size,
            "remote_commit": self.remote_commit,
        }


def check_for_updates(
    models: Iterable[InstalledModel],
    *,
    endpoint: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    retries: int = 1,
    on_checked: Callable[[UpdateCheck], None] | None = None,
) -> list[UpdateCheck]:
    """Compare every model with its repository's current file (one HEAD request each).

    A Hub that cannot be reached at all raises its plain-words error (``HubUnreachableError``,
    ``TLSError``, ``HubOfflineError``) at the first model; a problem of one model's repository
    (gone, gated, the file removed) is that model's ``failed`` result.
    """
    results: list[UpdateCheck] = []
    for model in models:
        result = check_one(model, endpoint=endpoint, token=token, timeout=timeout, retries=retries)
        results.append(result)
        if on_checked is not None:
            on_checked(result)
    return results


def check_one(
    model: InstalledModel,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    retries: int = 1,
) -> UpdateCheck:
    if not model.repo or not model.filename:
        return UpdateCheck(model, "not_from_hub", "Imported from this computer; not on the Hub.")
    try:
        meta = hub.fetch_file_metadata(
            model.repo,
            model.filename,
            revision=DEFAULT_REVISION,
            token=token,
            endpoint=endpoint,
            timeout=timeout,
            retries=retries,
            retry_wait=0.5,
        )
    except _WAY_TO_THE_HUB:
        raise
    except AssistantError as exc:
        return UpdateCheck(model, "failed", exc.message)
    remote_sha = meta.sha256

    def result(status: UpdateStatus, note: str) -> UpdateCheck:
        return UpdateCheck(model, status, note, remote_sha, meta.size, meta.commit)

    if model.sha256 and remote_sha:
        same = model.sha256.lower() == remote_sha
    elif meta.size is not None and not model.sha256:
        # An import without a checksum: the size is all there is to compare.
        same = meta.size == model.size_bytes
    else:
        return result("unknown", "The Hub publishes no checksum for this file.")
    at = f" (commit {meta.commit[:12]})" if meta.commit else ""
    if same:
        return result("current", f"Up to date with the Hub{at}.")
    size = f", {meta.size:,} bytes" if meta.size is not None else ""
    return result(
        "changed", f"The repository now has a different {model.filename}{at}{size}; yours is kept."
    )


__all__ = ["UpdateCheck", "UpdateStatus", "check_for_updates", "check_one"]
