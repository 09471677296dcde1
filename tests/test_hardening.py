"""Issue 8: no damaged file, full disk or odd input ends in a traceback, a "bug" report or lost
history. One section per numbered item of the issue; real SQLite files, real file systems,
real permissions (a test user when the tests run as root)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from assistant.chat import recovery
from assistant.chat.conversation import check_question
from assistant.chat.history import HistoryStore, damage_marker
from assistant.cli import main
from assistant.errors import (
    EmptyQuestionError,
    HistoryDamagedError,
    HistoryReadOnlyError,
    InvalidTextError,
    ModelFileMissingError,
    NotARegularFileError,
    SymlinkLoopError,
)
from assistant.logs import PRIVATE_ENVIRONMENT, UrlQueryFilter, strip_url_queries
from assistant.models.gguf_file import read_gguf_info
from assistant.paths import app_paths
from assistant.settings import Settings, setting
from tests.damaged_history import damaged_history
from tests.full_disk import fill, fsize_limit, other_user, remount_read_only, tmpfs

ROOT = Path(__file__).resolve().parent.parent
BUG = "something went wrong"


def run_cli(
    *args: str | bytes,
    stdin: bytes | None = None,
    user: str | None = None,
    preexec: object = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, as a user would run it (``user``: as that
    account, through ``setpriv``)."""
    command: list[str | bytes] = [sys.executable, "-m", "assistant", *args]
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        command = [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            *command,
        ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def assert_clean_failure(done: subprocess.CompletedProcess[str], *, code: int = 1) -> None:
    """One clear error, a non-zero exit code, no traceback and no bug report."""
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert BUG not in done.stderr
    assert "error:" in done.stderr


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db_path() -> Path:
    return app_paths().history_db


# --- 1. the desktop app's start, without Qt: the history is always openable ------------------


def test_a_read_only_data_folder_still_opens_the_history_for_reading(
    db_path: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", 4096) as disk:
        db = disk / "history.sqlite3"
        with HistoryStore(db) as store:
            conv = store.create_conversation(title="Kept")
            store.add_message(conv.id, "user", "still here")
        remount_read_only(disk)
        store = HistoryStore.open(db)
        try:
            assert store.read_only
            assert [m.text for m in store.messages(conv.id)] == ["still here"]
            with pytest.raises(HistoryReadOnlyError):
                store.add_message(conv.id, "user", "lost")
        finally:
            store.close()


def test_no_history_and_no_way_to_make_one_opens_an_empty_read_only_history(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro", 256) as disk:
        remount_read_only(disk)
        store = HistoryStore.open(disk / "history.sqlite3")
        assert store.read_only and store.list_conversations() == []
        store.close()


# --- 2. damage found while reading is a known problem, and stops the writing ----------------


def test_damage_inside_the_file_is_one_error_type_from_every_path(db_path: Path) -> None:
    damaged_history(db_path)
    store = HistoryStore(db_path)  # the cheap start check reads only the schema and the list
    assert len(store.list_conversations()) == 40
    with pytest.raises(HistoryDamagedError) as found:
        for conv in store.list_conversations():
            store.messages(conv.id)
    assert found.value.path == db_path and found.value.command
    before = sha(db_path)
    for write in (
        lambda: store.create_conversation(title="x"),
        lambda: store.add_message(1, "user", "more"),
        lambda: store.rename_conversation(1, "y"),
        lambda: store.purge_deleted(),
    ):
        with pytest.raises(HistoryDamagedError, match="no longer written"):
            write()
    with pytest.raises(HistoryDamagedError):
        store.search("question")
    store.close()
    assert sha(db_path) == before  # not one more byte written into the damaged file
    assert damage_marker(db_path).exists()  # the next start checks the whole file
    with pytest.raises(HistoryDamagedError):
        HistoryStore(db_path)


def test_the_cli_reports_damage_and_how_to_recover(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged_history(db_path)
    results = [
        cli(capsys, "history", "search", "question"),
        cli(capsys, "history", "check"),
    ]
    results += [cli(capsys, "history", "show", str(n)) for n in range(1, 41)]
    failures = [(code, err) for code, _out, err in results if code != 0]
    assert failures, "some conversation sits on a damaged page"
    for code, err in failures:
        assert code == 1 and BUG not in err
        assert "damaged" in err and "Run: offline-assistant history recover" in err


def test_history_recover_moves_the_file_aside_and_salvages(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged_history(db_path)
    original = sha(db_path)
    code, out, _err = cli(capsys, "history", "recover")
    assert code == 0
    assert "Recovered 40 conversation(s)" in out
    moved = [p for p in db_path.parent.iterdir() if ".damaged-" in p.name and p.suffix != ""]
    kept = next(p for p in moved if p.name.endswith(tuple("0123456789")))
    assert sha(kept) == original  # the damaged file is kept, byte for byte
    with HistoryStore(db_path) as fresh:
        assert fresh.check_integrity() == []
        conversations = fresh.list_conversations()
        assert len(conversations) == 40
        texts = [m.text for c in conversations for m in fresh.messages(c.id)]
    assert 200 <= len(texts) < 240  # the two damaged pages' messages are lost, no more
    assert cli(capsys, "history", "check")[0] == 0


def test_a_file_that_is_not_a_database_at_all(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(HistoryDamagedError, match="does not start like a database"):
        HistoryStore(db_path)
    store, result = recovery.start_fresh(db_path)
    assert result.report is not None and result.report.conversations == 0
    assert result.moved_to.exists() and store.list_conversations() == []
    store.close()


def test_ask_refuses_to_write_into_a_damaged_history(db_path: Path) -> None:
    damaged_history(db_path)
    before = sha(db_path)
    done = run_cli("ask", "--conversation", "1", "--model-path", "/nonexistent.gguf", "hi")
    assert_clean_failure(done)
    assert sha(db_path) == before


# --- 3. private by default --------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_first_start_makes_private_folders_and_files(db_path: Path) -> None:
    paths = app_paths().ensure()
    with HistoryStore(db_path) as store:
        store.create_conversation(title="secret")
        for folder in (paths.data, paths.cache, paths.config, paths.logs):
            assert _mode(folder) == 0o700, folder
        for name in ("history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm"):
            assert _mode(db_path.with_name(name)) == 0o600, name


def test_an_older_install_is_tightened_at_start(db_path: Path) -> None:
    paths = app_paths()
    for folder in (paths.data, paths.cache, paths.config, paths.logs):
        folder.mkdir(parents=True, mode=0o755)
        os.chmod(folder, 0o755)
    sqlite3.connect(db_path).close()
    os.chmod(db_path, 0o644)
    paths.ensure()
    HistoryStore(db_path).close()
    assert _mode(paths.data) == 0o700 and _mode(paths.logs) == 0o700
    assert _mode(db_path) == 0o600


def test_another_user_cannot_read_the_history(db_path: Path) -> None:
    user = other_user()
    if user is None:
        pytest.skip("the tests run as an unprivileged user: nothing to compare with")
    app_paths().ensure()
    with HistoryStore(db_path) as store:
        store.create_conversation(title="secret")
    done = subprocess.run(
        ["setpriv", "--reuid", user, "--regid", "nogroup", "--clear-groups", "cat", db_path],
        capture_output=True,
    )
    assert done.returncode != 0 and b"Permission denied" in done.stderr


# --- 4. a full log disk -----------------------------------------------------------------------


def test_a_full_log_disk_warns_once_and_goes_quiet(tmp_path: Path) -> None:
    home = Path(os.environ["OFFLINE_ASSISTANT_HOME"])
    logs = home / "logs"
    script = (
        "import logging; from assistant.logs import setup_logging; setup_logging();"
        "log = logging.getLogger('t');"
        "[log.info('line %d ' + 'x' * 500, n) for n in range(300)]"
    )
    with tmpfs(logs, 64) if _mountable() else _nothing():
        if _mountable():
            (logs / "offline-assistant.log").touch()
            fill(logs)
            preexec = None
        else:
            preexec = fsize_limit(4096)
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=preexec,
            timeout=60,
        )
    assert done.returncode == 0
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("cannot be written") == 1, done.stderr


def _mountable() -> bool:
    from tests.full_disk import can_mount

    return can_mount()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# --- 6. file-system errors on a model path ----------------------------------------------------


def test_model_paths_that_are_not_files_are_refused_with_the_cause(tmp_path: Path) -> None:
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(loop)
    with pytest.raises(SymlinkLoopError, match="leads back to itself"):
        read_gguf_info(loop)
    with pytest.raises(NotARegularFileError, match="is a folder"):
        read_gguf_info(tmp_path)
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(NotARegularFileError, match="named pipe"):
        read_gguf_info(fifo)  # would block forever if it were opened
    assert time.monotonic() - started < 30
    with pytest.raises(ModelFileMissingError):
        read_gguf_info(tmp_path / "missing.gguf")


@pytest.mark.parametrize("kind", ["loop", "folder", "fifo"])
def test_models_import_names_the_problem(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / f"{kind}.gguf"
    if kind == "loop":
        target.symlink_to(target)
    elif kind == "folder":
        target.mkdir()
    else:
        os.mkfifo(target)
    code, _out, err = cli(capsys, "models", "import", str(target))
    assert code == 1 and BUG not in err
    assert {"loop": "leads back to itself", "folder": "is a folder", "fifo": "named pipe"}[
        kind
    ] in err


def test_an_unreadable_model_file_is_a_permission_error(tmp_path: Path, model_path: Path) -> None:
    user = other_user()
    # pytest's own tmp folders are 0700: the test user needs a way in to the files it may see.
    shared = Path(tempfile.mkdtemp(prefix="oa-perm-"))
    os.chmod(shared, 0o755)
    folder = shared / "models"
    folder.mkdir()
    secret = folder / "secret.gguf"
    secret.write_bytes(model_path.read_bytes()[:4096])
    os.chmod(secret, 0o600)
    home = shared / "userhome"
    home.mkdir()
    os.chmod(home, 0o777)
    env_home = os.environ["OFFLINE_ASSISTANT_HOME"]
    os.environ["OFFLINE_ASSISTANT_HOME"] = str(home)
    try:
        done = run_cli("models", "import", str(secret), user=user)
    finally:
        os.environ["OFFLINE_ASSISTANT_HOME"] = env_home
        shutil.rmtree(shared, ignore_errors=True)
    assert_clean_failure(done)
    assert "No permission" in done.stderr


# --- 7. invalid UTF-8 -------------------------------------------------------------------------


def test_invalid_utf8_in_an_argument_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(capsys, "history", "search", "caf\udce9")
    assert code == 2 and BUG not in err
    assert "Argument 3 is not valid UTF-8 text (an invalid byte at position 3)" in err


def test_invalid_utf8_in_a_real_argument(db_path: Path) -> None:
    done = run_cli("ask", b"caf\xe9 au lait")
    assert_clean_failure(done, code=2)
    assert "position 3" in done.stderr
    assert not db_path.exists() or HistoryStore(db_path).list_conversations() == []


@pytest.mark.slow
def test_chat_survives_an_invalid_line_and_leaves_no_empty_chat(
    db_path: Path, model_path: Path
) -> None:
    done = run_cli(
        "chat",
        "--model-path",
        str(model_path),
        "--max-tokens",
        "4",
        stdin=b"caf\xe9\n   \n/exit\n",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "not valid UTF-8" in done.stderr and BUG not in done.stderr
    with HistoryStore(db_path) as store:
        assert store.list_conversations() == []  # no "(untitled)" left behind


# --- 8. more commands that used to report a bug -----------------------------------------------


@pytest.fixture
def one_conversation(db_path: Path) -> int:
    with HistoryStore(db_path) as store:
        conv = store.create_conversation(title="Exported")
        store.add_message(conv.id, "user", "hello")
        return conv.id


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("{tmp}", "is a folder"),
        ("/proc/version", "not a file an export can replace"),
        ("{tmp}/no/such/folder/x.md", "no folder"),
    ],
)
def test_export_onto_odd_targets(
    target: str,
    expected: str,
    one_conversation: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = target.format(tmp=tmp_path)
    code, _out, err = cli(capsys, "history", "export", str(one_conversation), "-o", output)
    assert code == 1 and BUG not in err
    assert expected in err


def test_export_into_an_unwritable_folder(one_conversation: int, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", 256) as disk:
        remount_read_only(disk)
        done = run_cli("history", "export", str(one_conversation), "-o", str(disk / "x.md"))
    assert_clean_failure(done)
    assert "No permission" in done.stderr or "read-only" in done.stderr


def test_export_onto_a_symlink_writes_its_target_and_keeps_the_link(
    one_conversation: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.md"
    real.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    code, _out, _err = cli(capsys, "history", "export", str(one_conversation), "-o", str(link))
    assert code == 0
    assert link.is_symlink() and "hello" in real.read_text()


def test_ctrl_d_at_the_token_prompt() -> None:
    done = run_cli("models", "token", "set", stdin=b"")
    assert done.returncode == 1 and "Traceback" not in done.stderr and BUG not in done.stderr
    assert "No token entered" in done.stderr


def test_importing_deeply_nested_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 200_000 + "]" * 200_000)
    code, _out, err = cli(capsys, "history", "import", str(nested))
    assert code == 1 and "nested too deeply" in err and BUG not in err
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"a": "\xff"}')
    code, _out, err = cli(capsys, "history", "import", str(binary))
    assert code == 1 and "position 7" in err


@pytest.mark.parametrize("number", [str(2**70), "0", "-3", "²", "1e3"])
def test_conversation_numbers_out_of_range(number: str, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["ask", "--conversation", number, "hi"],
        ["history", "show", number],
        ["history", "export", number],
    ):
        with pytest.raises(SystemExit) as ended:
            main(args)
        assert ended.value.code == 2
        err = capsys.readouterr().err
        assert "out of range" in err or "not a whole number" in err, err


def test_pathological_settings_fall_back_to_defaults(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    cases: list[bytes] = [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe garbage",
        json.dumps({"gpu_layers": "\u00b2"}).encode(),
        b'{"temperature": NaN, "max_tokens": 1e999, "threads": -1}',
        b" " * (2 * 1024 * 1024),
    ]
    for content in cases:
        path.write_bytes(content)
        settings = Settings.load(path)
        assert settings.warnings, content[:20]
        assert settings.as_dict() == Settings(path).as_dict()  # every value a default
        assert all(len(text) < 300 for text in settings.warnings)


# --- 9. privacy -------------------------------------------------------------------------------


def test_urls_are_logged_without_their_query_strings() -> None:
    signed = "https://cdn.example/x.gguf?X-Amz-Signature=abc&Expires=1"
    assert strip_url_queries(f"got {signed} ok") == "got https://cdn.example/x.gguf?… ok"
    record = logging.LogRecord("t", logging.INFO, "", 0, "GET %s failed: %s", None, None)
    record.args = (signed, ValueError(f"403 for url '{signed}'"))
    UrlQueryFilter().filter(record)
    assert "Signature" not in record.getMessage()


def test_the_log_file_holds_no_signed_url(app_home: Path) -> None:
    from assistant.logs import setup_logging

    setup_logging()
    logging.getLogger("t").warning("Redirected to https://cdn.example/f?token=SECRET")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (app_paths().logs / "offline-assistant.log").read_text()
    assert "SECRET" not in text and "https://cdn.example/f?…" in text


def test_huggingface_hub_is_told_to_stay_quiet() -> None:
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENVIRONMENT}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import assistant.cli, huggingface_hub.constants as c;"
            "print(c.HF_HUB_DISABLE_TELEMETRY, c.HF_HUB_DISABLE_UPDATE_CHECK)",
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.split() == ["True", "True"], done.stderr


# --- 10. smaller ones -------------------------------------------------------------------------


def test_each_settings_warning_is_printed_once(app_home: Path) -> None:
    settings_file = app_paths().settings_file
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text('{"gpu_layers": "lots"}')
    done = run_cli("ask", "--model-path", "/nonexistent.gguf", "hi")
    assert done.stderr.count("gpu_layers") == 1, done.stderr


def test_empty_questions_are_refused_everywhere(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for question in ("", "   ", "\n\t"):
        code, _out, err = cli(capsys, "ask", question)
        assert code == 1 and "empty" in err
        with pytest.raises(EmptyQuestionError):
            check_question(question)
    with HistoryStore(db_path) as store:
        conv = store.create_conversation()
        with pytest.raises(EmptyQuestionError):
            store.add_message(conv.id, "user", "  ")  # the GUI's runner saves through here
        with pytest.raises(InvalidTextError):
            store.add_message(conv.id, "user", "caf\udce9")
        assert store.messages(conv.id) == []
        assert store.list_conversations()[0].title == ""


@pytest.mark.parametrize(
    ("option", "value", "span"),
    [
        ("--max-tokens", "0", "from 1 to 32768"),
        ("--max-tokens", "-5", "from 1 to 32768"),
        ("--temperature", "nan", "finite"),
        ("--temperature", "-5", "from 0 to 2"),
        ("--temperature", "inf", "finite"),
        ("--seed", "-1", "from 0 to 4294967295"),
    ],
)
def test_option_ranges_come_from_the_settings_schema(
    option: str, value: str, span: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["ask", option, value, "hi"])
    assert ended.value.code == 2
    assert span in capsys.readouterr().err
    declared = setting("max_tokens")
    assert (declared.minimum, declared.maximum) == (1, 32768)  # the one declaration


@pytest.mark.slow
def test_parallel_asks_keep_each_question_next_to_its_answer(
    db_path: Path, model_path: Path
) -> None:
    with HistoryStore(db_path) as store:
        conv = store.create_conversation(title="Busy")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assistant",
                "ask",
                "--model-path",
                str(model_path),
                "--conversation",
                str(conv.id),
                "--max-tokens",
                "6",
                "--temperature",
                "0",
                f"question {n}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for n in range(4)
    ]
    for child in children:
        assert child.wait(timeout=300) == 0, child.stderr.read() if child.stderr else ""
    with HistoryStore(db_path) as store:
        roles = [m.role for m in store.messages(conv.id)]
    assert roles == ["user", "assistant"] * 4
