"""Atomic file writes, seen from the outside: a reader never catches a file half written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.atomic import atomic_write_text
from tests.support import child_env

# Another process reads the file in a tight loop until told to stop, and reports every read
# that was not one whole version: empty, cut short, or not JSON.
READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    target, stop = Path(sys.argv[1]), Path(sys.argv[2])
    reads = torn = 0
    while not stop.exists():
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        reads += 1
        try:
            data = json.loads(text)
            whole = len(data["padding"]) == data["size"]
        except (ValueError, KeyError, TypeError):
            whole = False
        torn += not whole
    print(json.dumps({"reads": reads, "torn": torn}))
    """
)


def _version(number: int) -> str:
    size = 20_000 + (number % 7) * 5_000  # versions of different lengths
    return json.dumps({"version": number, "size": size, "padding": "x" * size})


def test_a_reader_never_sees_a_partial_or_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "settings.json"
    stop = tmp_path / "stop"
    atomic_write_text(target, _version(0))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(target), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        for number in range(1, 600):
            atomic_write_text(target, _version(number))
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    seen = json.loads(out)
    assert seen["reads"] > 100, "the reader should have read the file many times"
    assert seen["torn"] == 0
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == 599
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# A real failed write, no privileges needed: the child may not grow any file past 1 KB, so
# write() fails with EFBIG (SIGXFSZ, which would kill it instead, is ignored).
FAILING_WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from assistant.atomic import atomic_write_text

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    try:
        atomic_write_text(Path(sys.argv[1]), "new " * 4096)
    except OSError as exc:
        print(exc.errno)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits")
def test_a_failed_write_leaves_the_previous_version(tmp_path: Path) -> None:
    import errno

    target = tmp_path / "settings.json"
    atomic_write_text(target, "old")
    failed = subprocess.run(
        [sys.executable, "-c", FAILING_WRITER, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.strip() == str(errno.EFBIG)
    assert target.read_text(encoding="utf-8") == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_writes_into_folders_that_do_not_exist_yet(tmp_path: Path) -> None:
    target = tmp_path / "config" / "offline-assistant" / "settings.json"
    atomic_write_text(target, "{}")
    assert target.read_text(encoding="utf-8") == "{}"


def test_the_new_version_is_written_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a temporary file on the target's own file system can be renamed over it: the
    system's temporary folder (often another file system) is never used."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temporary-folder"))
    target = tmp_path / "settings.json"
    atomic_write_text(target, "beside")
    assert target.read_text(encoding="utf-8") == "beside"


def test_text_is_saved_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """A plain-ASCII locale (no UTF-8 mode, no locale coercion) still gets UTF-8 files."""
    target = tmp_path / "settings.json"
    text = "Système: «Réponds en français» ✓"
    env = child_env(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    written = subprocess.run(
        [
            sys.executable,
            "-c",
            # The text goes in as escapes: an ASCII locale would mangle it as an argument.
            "import sys; from pathlib import Path; from assistant.atomic import "
            f"atomic_write_text; atomic_write_text(Path(sys.argv[1]), {text!a})",
            str(target),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    assert target.read_bytes() == text.encode("utf-8")
    # And in this process, whatever its locale (this also tells a mutation tool, which traces
    # only this process, that the test covers the function).
    here = tmp_path / "here.json"
    atomic_write_text(here, text)
    assert here.read_bytes() == text.encode("utf-8")


# The writer dies between writing the new version and renaming it over the old one, as a kill
# or a power cut would leave it: fsync ends the process on the spot.
DYING_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from assistant.atomic import atomic_write_text

    os.fsync = lambda fd: os._exit(9)
    atomic_write_text(Path(sys.argv[1]), "new")
    """
)


def test_a_crash_mid_write_leaves_the_old_file_and_a_hidden_leftover_named_after_it(
    tmp_path: Path,
) -> None:
    """What a crash leaves behind is hidden from folder listings (a dot file) and says whose it
    is: ``.settings.json-<random>.tmp`` beside ``settings.json``."""
    target = tmp_path / "settings.json"
    atomic_write_text(target, "old")
    died = subprocess.run(
        [sys.executable, "-c", DYING_WRITER, str(target)], env=child_env(), timeout=60
    )
    assert died.returncode == 9
    assert target.read_text(encoding="utf-8") == "old"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1
    name = leftovers[0].name
    assert name.startswith(".settings.json-") and name.endswith(".tmp"), name
    assert len(name) > len(".settings.json-.tmp")  # a random part: two writers never collide
    assert leftovers[0].read_text(encoding="utf-8") == "new"
