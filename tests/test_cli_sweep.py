"""Issue 8: a sweep of the command line with generated bad input. Any traceback or "bug"
report fails the test. Bounded (a modest number of examples, no deadline) and never loads a
model: every command generated fails, or finishes, before a model would load."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.chat.history import HistoryStore
from assistant.cli import main
from assistant.paths import app_paths

# Real argv is bytes from the OS, decoded with surrogateescape; it never holds a NUL byte.
raw_text = st.binary(max_size=24).map(
    lambda data: data.replace(b"\0", b"").decode("utf-8", errors="surrogateescape")
)
odd_text = st.one_of(
    raw_text,
    st.text(max_size=24).map(lambda text: text.replace("\0", "")),
    st.sampled_from(
        ["", " ", "\t\n", "-1", "0", "2" * 30, "nan", "inf", "1e400", "²", "٣", "--", "-"]
    ),
)
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    odd_text,
)
paths = st.one_of(
    odd_text,
    st.sampled_from(
        ["/", "/proc/version", "/dev/null", "/nonexistent/x.gguf", ".", "..", "/etc/shadow"]
    ),
)
MISSING_MODEL = "/nonexistent/model.gguf"  # every ask fails on it before any load


def commands() -> st.SearchStrategy[list[str]]:
    ask = st.tuples(
        st.sampled_from(["ask"]),
        st.lists(
            st.one_of(
                st.tuples(st.just("--conversation"), numbers),
                st.tuples(st.just("--max-tokens"), numbers),
                st.tuples(st.just("--temperature"), numbers),
                st.tuples(st.just("--seed"), numbers),
                st.tuples(st.just("--system"), odd_text),
                st.tuples(st.just("--model"), odd_text),
            ),
            max_size=3,
        ),
        odd_text,
    ).map(
        lambda t: [
            t[0],
            "--model-path",
            MISSING_MODEL,
            *[part for pair in t[1] for part in pair],
            "--",
            t[2],
        ]
    )
    history = st.one_of(
        st.tuples(st.just("list"), st.sampled_from(["--limit"]), numbers).map(list),
        st.tuples(st.just("show"), numbers).map(list),
        st.tuples(st.just("search"), odd_text).map(list),
        st.tuples(st.just("export"), numbers, st.just("-o"), paths).map(list),
        st.tuples(st.just("export"), st.just("1"), st.just("-o"), paths).map(list),
        st.tuples(st.just("import"), paths).map(list),
        st.just(["check"]),
    ).map(lambda args: ["history", *args])
    models = st.one_of(
        st.tuples(st.sampled_from(["import", "rm", "default"]), paths).map(list),
        st.tuples(st.just("import"), paths, st.just("--id"), odd_text).map(list),
    ).map(lambda args: ["models", *args])
    return st.one_of(ask, history, models)


@pytest.fixture
def one_conversation() -> None:
    with HistoryStore(app_paths().ensure().history_db) as store:
        conv = store.create_conversation(title="Swept")
        store.add_message(conv.id, "user", "hello")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=commands())
def test_no_input_ends_in_a_traceback_or_a_bug_report(
    argv: list[str],
    one_conversation: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # an export to a relative name lands here
    try:
        code = main(argv)
    except SystemExit as ended:  # argparse's usage error: one line, exit 2
        code = ended.code if isinstance(ended.code, int) else 1
    err = capsys.readouterr().err
    assert "something went wrong" not in err, (argv, err)
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
