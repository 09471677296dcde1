"""Cloud providers, keys, consent and the ledger, against real HTTP servers on 127.0.0.1.

The stand-in servers (tests/cloud_server.py) speak the OpenAI Chat Completions and Anthropic
Messages streaming formats and count every request, so "nothing was sent" is a count of zero.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail

from assistant import secrets
from assistant.chat import conversation
from assistant.chat.consent import (
    advise,
    build_preview,
    context_until_question,
    decide,
    redact,
    status_text,
)
from assistant.chat.history import HistoryStore
from assistant.chat.ledger import CloudLedger
from assistant.chat.migrations import MIGRATIONS, migrate, open_connection
from assistant.cli import main
from assistant.cloud import CloudConfig, cloud_entry, from_preset, make_endpoint, register_cloud
from assistant.engine.base import CancelToken, ChatMessage, GenerationSettings, GenerationStats
from assistant.engine.cloud import (
    CloudDisabledError,
    CloudEndpoint,
    CloudError,
    CloudKeyError,
    CloudProvider,
    CloudRateLimitError,
    CloudRequestError,
    CloudServerError,
    CloudStreamError,
    CloudTimeoutError,
    CloudUnreachableError,
    CloudURLError,
    MissingKeyError,
    check_base_url,
    mask_key,
)
from assistant.errors import SecretStoreError
from assistant.paths import app_paths
from assistant.providers import ProviderRegistry
from tests.cloud_server import FakeCloud

KEY = "sk-test-0123456789abcdef"
SETTINGS = GenerationSettings(temperature=0.2, max_tokens=64)
QUESTION = "What is the capital of France?"


@pytest.fixture(params=["openai", "anthropic"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeCloud]:
    with FakeCloud(request.param, key=KEY) as started:
        yield started


@pytest.fixture
def openai_server() -> Iterator[FakeCloud]:
    with FakeCloud("openai", key=KEY) as started:
        yield started


def provider_for(server: FakeCloud, key: str | None = KEY, **options: object) -> CloudProvider:
    endpoint = CloudEndpoint("team", server.kind, server.url, "big-model", "Team server")
    return CloudProvider(endpoint, lambda: key, **options)  # type: ignore[arg-type]


def chat() -> list[ChatMessage]:
    return [ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION)]


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8080/v1",
        "http://localhost/v1",
        "http://[::1]:1/v1",
    ],
)
def test_https_or_loopback_addresses_are_accepted(url: str) -> None:
    assert check_base_url(url + "/") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/v1",
        "http://192.168.1.5:8080/v1",
        "ftp://x/v1",
        "api.openai.com",
        "https://user:pw@h/v1",
    ],
)
def test_plain_http_to_another_computer_is_refused(url: str) -> None:
    with pytest.raises(CloudURLError):
        check_base_url(url)
    with pytest.raises(CloudURLError):
        make_endpoint("team", "openai", url, "m")


def test_keys_are_shown_masked() -> None:
    assert mask_key(KEY) == "sk-…cdef"
    assert KEY not in mask_key(KEY)
    assert mask_key("short") == "••••••••"
    assert mask_key(None) == "no key"


# --- streaming answers ------------------------------------------------------------------------


def test_a_streamed_answer_lands_in_the_conversation_marked_as_cloud(
    server: FakeCloud, app_home: Path
) -> None:
    history = HistoryStore(app_paths().ensure().history_db)
    created = history.create_conversation(system_prompt="Be brief.")
    history.add_message(created.id, "user", QUESTION)
    provider = provider_for(server)
    chunks: list[str] = []

    exchange = conversation.answer(history, provider, created.id, SETTINGS, on_chunk=chunks.append)

    assert exchange.text == server.reply
    assert len(chunks) > 1  # streamed, not in one piece
    saved = history.messages(created.id)[-1]
    assert (saved.provider, saved.model, saved.status) == ("team", "big-model", "complete")
    assert saved.stats["completion_tokens"] == len(server.reply.split())
    assert saved.stats["prompt_tokens"] > 0
    assert "cloud: team" in history.export_markdown(created.id)
    (request,) = server.chat_requests
    body = request.body
    assert body["model"] == "big-model" and body["stream"] is True
    if server.kind == "anthropic":
        assert body["system"] == "Be brief."
        assert body["messages"] == [{"role": "user", "content": QUESTION}]
        assert request.headers["x-api-key"] == KEY
    else:
        assert body["messages"] == [m.to_dict() for m in chat()]
        assert request.headers["Authorization"] == f"Bearer {KEY}"
    provider.close()
    history.close()


def test_test_connection_lists_the_models(server: FakeCloud) -> None:
    assert provider_for(server).test_connection() == ["big-model", "bigger-model"]
    assert server.chat_requests == []  # no conversation is sent by a test


def test_a_cancel_keeps_the_text_so_far(server: FakeCloud) -> None:
    cancel = CancelToken()
    generation = provider_for(server).stream_chat(chat(), SETTINGS, cancel)
    for _chunk in generation:
        cancel.cancel()
    assert generation.stats is not None and generation.stats.stop_reason == "cancelled"
    assert generation.text and generation.text != server.reply


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, CloudKeyError),
        (429, CloudRateLimitError),
        (500, CloudServerError),
        (400, CloudRequestError),
    ],
)
def test_http_failures_are_named_and_leave_the_conversation_untouched(
    server: FakeCloud, status: int, error: type[CloudError]
) -> None:
    history = HistoryStore(app_paths().ensure().history_db)
    created = history.create_conversation()
    history.add_message(created.id, "user", QUESTION)
    before = history.messages(created.id)
    server.fault.status = status

    with pytest.raises(error) as caught:
        conversation.answer(history, provider_for(server), created.id, SETTINGS)

    assert history.messages(created.id) == before
    assert caught.value.hint
    if status == 429:
        assert caught.value.retry_after_s == 7  # type: ignore[attr-defined]
        assert "7 seconds" in caught.value.hint


def test_a_wrong_key_echoed_by_the_server_never_reaches_the_message(server: FakeCloud) -> None:
    wrong = "sk-wrong-9f8e7d6c5b4a3210zz"
    with pytest.raises(CloudKeyError) as caught:
        provider_for(server, key=wrong).stream_chat(chat(), SETTINGS)
    text = f"{caught.value} {caught.value.hint} {caught.value!r}"
    assert wrong not in text
    assert wrong[:-4] not in text


@pytest.mark.parametrize("fault", ["drop", "truncate", "malformed", "stream_error"])
def test_a_broken_stream_is_a_clear_error(server: FakeCloud, fault: str) -> None:
    setattr(server.fault, fault, True)
    generation = provider_for(server).stream_chat(chat(), SETTINGS)
    with pytest.raises(CloudError) as caught:
        generation.run()
    assert isinstance(caught.value, CloudStreamError | CloudRateLimitError)
    assert caught.value.hint


def test_a_broken_stream_keeps_the_part_received_marked_failed(openai_server: FakeCloud) -> None:
    history = HistoryStore(app_paths().ensure().history_db)
    created = history.create_conversation()
    history.add_message(created.id, "user", QUESTION)
    openai_server.fault.drop = True
    with pytest.raises(CloudStreamError):
        conversation.answer(history, provider_for(openai_server), created.id, SETTINGS)
    saved = history.messages(created.id)[-1]
    assert saved.status == "error" and saved.provider == "team"
    # A failed answer is never part of what the next question sends.
    assert conversation.context_for(history, created.id) == [ChatMessage("user", QUESTION)]


def test_a_server_that_stops_answering_times_out(openai_server: FakeCloud) -> None:
    openai_server.fault.slow_s = 3.0
    generation = provider_for(openai_server, read_timeout_s=0.3).stream_chat(chat(), SETTINGS)
    with pytest.raises(CloudTimeoutError):
        generation.run()


def test_nobody_listening_is_unreachable() -> None:
    with FakeCloud() as server:
        url = server.url
    endpoint = CloudEndpoint("gone", "openai", url, "m")
    with pytest.raises(CloudUnreachableError) as caught:
        CloudProvider(endpoint, lambda: KEY).stream_chat(chat(), SETTINGS)
    assert "could not be reached" in str(caught.value)


def test_a_wrong_base_url_is_named(openai_server: FakeCloud) -> None:
    endpoint = CloudEndpoint("team", "openai", openai_server.url + "/nope", "m")
    with pytest.raises(CloudURLError):
        CloudProvider(endpoint, lambda: KEY).stream_chat(chat(), SETTINGS)


def test_no_key_or_the_switch_off_sends_nothing(openai_server: FakeCloud) -> None:
    with pytest.raises(MissingKeyError):
        provider_for(openai_server, key=None).stream_chat(chat(), SETTINGS)
    with pytest.raises(CloudDisabledError):
        provider_for(openai_server, allowed=lambda: False).stream_chat(chat(), SETTINGS)
    assert openai_server.requests == []


# --- keys ------------------------------------------------------------------------------------


def test_keys_live_in_the_keyring_under_the_provider_name(memory_keyring: object) -> None:
    secrets.set_cloud_key("team", KEY)
    assert keyring.get_password(secrets.SERVICE, "cloud-key:team") == KEY
    assert secrets.get_cloud_key("team") == KEY
    assert secrets.cloud_key_source("team") == "keyring"
    assert secrets.delete_cloud_key("team")
    assert secrets.get_cloud_key("team") is None


def test_without_a_keyring_the_key_is_held_in_memory_only(app_home: Path) -> None:
    keyring.set_keyring(fail.Keyring())
    assert not secrets.keyring_available()
    with pytest.raises(SecretStoreError) as caught:
        secrets.set_cloud_key("team", KEY)
    assert "memory" in caught.value.hint and KEY not in caught.value.full_text()
    secrets.hold_cloud_key_for_session("team", KEY)
    try:
        assert secrets.get_cloud_key("team") == KEY
        assert secrets.cloud_key_source("team") == "session"
        assert not any(KEY in p.read_text(errors="replace") for p in _files(app_home))
    finally:
        secrets.delete_cloud_key("team")


def test_the_scrubber_hides_every_key_seen(memory_keyring: object) -> None:
    secrets.set_cloud_key("team", KEY)
    assert secrets.scrub(f"Traceback ... headers={{'Authorization': 'Bearer {KEY}'}}") == (
        "Traceback ... headers={'Authorization': 'Bearer [hidden]'}"
    )


def test_the_bug_report_cannot_carry_a_key(memory_keyring: object) -> None:
    pytest.importorskip("PySide6")
    from assistant.ui.errors import bug_report, describe

    secrets.set_cloud_key("team", KEY)
    assert KEY not in bug_report(f"ValueError: {KEY}")
    try:
        raise RuntimeError(f"leaked {KEY}")
    except RuntimeError as exc:
        message, _hint, details = describe(exc)
    assert KEY not in message and KEY not in details


# --- provider definitions --------------------------------------------------------------------


def test_definitions_are_saved_without_keys_and_registered_as_remote(
    openai_server: FakeCloud, memory_keyring: object
) -> None:
    config = CloudConfig.for_paths(app_paths().ensure())
    config.save(make_endpoint("team", "openai", openai_server.url, "big-model"))
    config.save(from_preset("openai", "openai"))
    secrets.set_cloud_key("team", KEY)
    assert [e.name for e in config.list()] == ["team", "openai"]
    assert KEY not in config.path.read_text()

    registry = ProviderRegistry()
    assert register_cloud(registry, config, lambda: True) == ["team", "openai"]
    entry = registry.get("team")
    assert (entry.kind, entry.needs_key, entry.needs_network) == ("remote", True, True)
    provider = entry.open("", {})  # type: ignore[arg-type]
    assert provider.stream_chat(chat(), SETTINGS).run() == openai_server.reply

    assert config.remove("team")
    assert secrets.get_cloud_key("team") is None
    assert [e.name for e in config.list()] == ["openai"]


def test_a_switch_turned_off_later_stops_an_opened_provider(openai_server: FakeCloud) -> None:
    config = CloudConfig.for_paths(app_paths().ensure())
    config.save(make_endpoint("team", "openai", openai_server.url, "big-model"))
    secrets.hold_cloud_key_for_session("team", KEY)
    switch = {"on": True}
    try:
        provider = cloud_entry(config, "team", lambda: switch["on"]).open("", {})  # type: ignore[arg-type]
        provider.stream_chat(chat(), SETTINGS).run()
        switch["on"] = False
        with pytest.raises(CloudDisabledError):
            provider.stream_chat(chat(), SETTINGS)
        assert len(openai_server.chat_requests) == 1
    finally:
        secrets.delete_cloud_key("team")


# --- consent -----------------------------------------------------------------------------------


def test_the_rules_of_consent() -> None:
    assert decide(False, "allowed", "a", "a").decision == "blocked"
    assert decide(True, "local").decision == "blocked"
    assert decide(True, "ask", "a").decision == "preview"
    assert decide(True, "allowed", "a", "a").decision == "send"
    assert decide(True, "allowed", "b", "a").decision == "preview"  # granted for a only
    assert status_text(True, "allowed", "OpenAI") == "Cloud allowed: OpenAI"
    assert status_text(False, "allowed", "OpenAI") == "Local only"
    assert status_text(True, "ask") == "Cloud: ask each time"


def test_redaction_finds_personal_details() -> None:
    text = (
        "Mail jane.doe@example.org or call +44 20 7946 0958. My key is sk-abc123def456ghi789jkl "
        "and the file is /home/jane/secret/plan.txt or C:\\Users\\jane\\plan.docx. "
        "Meeting on 2024-05-01 at 10:30, 3 apples."
    )
    result = redact(text)
    for detail in ("jane.doe@", "7946", "sk-abc", "/home/jane", "C:\\Users"):
        assert detail not in result.text
    assert result.found == {"email": 1, "key": 1, "path": 2, "phone": 1}
    assert "2024-05-01 at 10:30, 3 apples" in result.text


def test_the_preview_is_exactly_what_is_sent() -> None:
    context = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "first, from bob@example.com"),
        ChatMessage("assistant", "a local answer"),
        ChatMessage("user", QUESTION),
        ChatMessage("assistant", "the local answer to escalate"),
    ]
    asked = context_until_question(context)
    assert asked == context[:4]
    whole = build_preview(asked, redact_details=True)
    assert whole.messages[1].content == "first, from [email]"
    assert whole.redacted == {"email": 1}
    latest = build_preview(asked, latest_only=True)
    assert latest.messages == [context[0], context[3]]
    assert latest.left_out == 2


def test_the_advisor_hints_and_only_hints() -> None:
    assert advise("Hi!", "Hello! How can I help?") is None
    assert advise("What is the latest news about the election?", "...") is not None
    assert advise("Prove that there are infinitely many primes", "...") is not None
    assert advise("Who wrote it?", "I'm not sure who wrote it.") is not None
    assert advise("Tell me", "x", GenerationStats(dropped_messages=3)) is not None
    assert advise("Tell me", "x", {"stop_reason": "length"}) is not None
    assert advise("Tell me", "x", mean_logprob=-2.5) is not None


# --- the ledger --------------------------------------------------------------------------------


def test_the_ledger_records_what_was_sent_and_received(app_home: Path) -> None:
    history = HistoryStore(app_paths().ensure().history_db)
    created = history.create_conversation()
    ledger = CloudLedger(history.db_path)
    assert ledger.mode(created.id) == ("local", None)
    ledger.set_mode(created.id, "allowed", "team")
    assert ledger.mode(created.id) == ("allowed", "team")
    entry = ledger.start(created.id, "team", "big", "https://x/v1", chat())
    ledger.finish(
        entry,
        status="complete",
        received="Paris.",
        stats=GenerationStats(prompt_tokens=9, completion_tokens=2),
    )
    (saved,) = ledger.entries()
    assert saved.sent == [m.to_dict() for m in chat()]
    assert (saved.sent_chars, saved.received_chars, saved.prompt_tokens) == (39, 6, 9)
    assert json.loads(json.dumps(ledger.export_json()))["entries"][0]["provider"] == "team"
    assert "team,big,https://x/v1" in ledger.export_csv()
    history.delete_conversation(created.id)
    history.purge_deleted()
    assert ledger.entries()[0].conversation_id is None  # the record outlives the chat
    ledger.close()
    history.close()


def test_the_cloud_migration_runs_on_an_old_database(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = open_connection(db)
    migrate(conn, MIGRATIONS[:3])
    conn.execute(
        "INSERT INTO conversations (title, created_at, updated_at) VALUES ('old', 'x', 'x')"
    )
    assert migrate(conn) == ["004_cloud_consent"]
    conn.close()
    ledger = CloudLedger(db)
    assert ledger.mode(1) == ("local", None)
    ledger.close()
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT COUNT(*) FROM cloud_ledger").fetchone() == (0,)


# --- the terminal --------------------------------------------------------------------------------


def cli(
    *args: str, stdin: str | None = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        input=stdin,
    )


def test_the_cli_adds_a_provider_and_asks_it_only_with_yes(
    openai_server: FakeCloud, app_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    added = cli(
        "cloud",
        "add",
        "team",
        "--kind",
        "openai",
        "--base-url",
        openai_server.url,
        "--model",
        "big-model",
    )
    assert added.returncode == 0, added.stderr
    refused = cli("cloud", "add", "far", "--base-url", "http://example.com/v1", "--model", "m")
    assert refused.returncode == 1 and "https" in refused.stderr

    # The key goes in through the in-process CLI, whose keyring is the tests' in-memory one.
    sys_stdin = sys.stdin
    try:
        import io

        sys.stdin = io.StringIO(KEY + "\n")
        assert main(["cloud", "key", "team"]) == 0
    finally:
        sys.stdin = sys_stdin
    env = {secrets.cloud_key_env("team"): KEY}  # a subprocess cannot see that keyring

    no_terminal = cli("ask", "--cloud", "team", QUESTION, env=env)
    assert no_terminal.returncode == 1
    assert "--yes" in no_terminal.stderr
    assert openai_server.chat_requests == []  # refused before anything was sent

    asked = cli(
        "ask", "--cloud", "team", "--yes", "--json", QUESTION + " Mail me: a@b.org", env=env
    )
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["text"] == openai_server.reply and data["provider"] == "team"
    (request,) = openai_server.chat_requests
    assert request.body["messages"][-1]["content"] == QUESTION + " Mail me: [email]"
    assert "About to send to team" in asked.stderr  # the preview, even with --yes

    listing = cli("cloud", "list", "--json", env=env)
    (row,) = json.loads(listing.stdout)["providers"]
    assert row["key"] == "sk-…cdef"
    ledger = cli("cloud", "ledger", "--json")
    (entry,) = json.loads(ledger.stdout)["entries"]
    assert entry["status"] == "complete" and entry["sent"] == request.body["messages"]

    history = HistoryStore(app_paths().history_db)
    (chat_row,) = history.list_conversations()
    assert [m.provider for m in history.messages(chat_row.id)] == [None, "team"]
    history.close()

    assert cli("cloud", "off").returncode == 0
    off = cli("ask", "--cloud", "team", "--yes", QUESTION, env=env)
    assert off.returncode == 1 and "off" in off.stderr
    assert len(openai_server.chat_requests) == 1

    _assert_key_nowhere(app_home, caplog)


def test_a_failed_cloud_ask_leaves_no_trace_but_the_ledger(openai_server: FakeCloud) -> None:
    env = {secrets.cloud_key_env("team"): KEY}
    assert (
        cli("cloud", "add", "team", "--base-url", openai_server.url, "--model", "m").returncode == 0
    )
    openai_server.fault.status = 429
    failed = cli("ask", "--cloud", "team", "--yes", QUESTION, env=env)
    assert failed.returncode == 1
    assert "429" in failed.stderr and "7 seconds" in failed.stderr
    history = HistoryStore(app_paths().history_db)
    assert history.list_conversations() == []
    history.close()
    ledger = CloudLedger(app_paths().history_db)
    (entry,) = ledger.entries()
    assert entry.status == "error" and "429" in entry.error
    ledger.close()


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _assert_key_nowhere(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    for path in _files(root):
        assert KEY.encode() not in path.read_bytes(), path
    assert not any(KEY in record.getMessage() for record in caplog.records)
