"""The cloud client on the wire: the exact requests it sends, and what each answer it can get
turns into (text, statistics, or the error and hint the user reads).

``ScriptedAPI`` is an HTTP server on 127.0.0.1 that answers every request with one scripted
reply (status, headers, raw body, optional stalls) and records what arrived, so a test can
feed the client answers no well-behaved stand-in would give: a stream without its end, an
error inside the stream, a proxy that refuses. The well-behaved stand-ins are in
``tests/cloud_server.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from assistant.engine.base import CancelToken, ChatMessage, GenerationSettings, GenerationStats
from assistant.engine.cloud import (
    CloudDisabledError,
    CloudEndpoint,
    CloudError,
    CloudKeyError,
    CloudKind,
    CloudProvider,
    CloudRateLimitError,
    CloudRequestError,
    CloudServerError,
    CloudStreamError,
    CloudTimeoutError,
    CloudTLSError,
    CloudUnreachableError,
    CloudURLError,
    MissingKeyError,
    check_base_url,
    is_loopback,
    mask_key,
    scrub,
)
from tests.cloud_server import FakeCloud

KEY = "sk-test-0123456789abcdef"
MASKED = "sk-…cdef"
QUESTION = "What is the capital of France?"
NAME = "Team server"
STREAM = {"Content-Type": "text/event-stream"}


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: dict(STREAM))
    body: bytes = b""
    before_s: float = 0.0  # silence before the status line
    after_s: float = 0.0  # silence after the body, connection still open


@dataclass
class Arrived:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedAPI:
    """Answers every request with ``reply``; ``arrived`` lists the requests (header names in
    lower case)."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply = reply or Reply()
        self.arrived: list[Arrived] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = lowered(self.headers.items())
                owner.arrived.append(Arrived(self.command, self.path, headers, raw))
                reply = owner.reply
                time.sleep(reply.before_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Connection", "close")  # the body ends when the socket does
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
                time.sleep(reply.after_s)
                self.close_connection = True

            do_GET = do_POST = do_CONNECT = _answer

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a stalled reply is part of the tests

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        ).start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api() -> Iterator[ScriptedAPI]:
    server = ScriptedAPI()
    yield server
    server.close()


def lowered(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers by lower-case name (HTTP header names are case-insensitive)."""
    return {name.lower(): value for name, value in items}


def sse(*events: object) -> bytes:
    """Server-sent events: each item is a JSON value, a raw string, or (event name, value)."""
    out = []
    for item in events:
        name, value = item if isinstance(item, tuple) else (None, item)
        data = value if isinstance(value, str) else json.dumps(value)
        out.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return "".join(out).encode()


def provider(url: str, kind: CloudKind = "openai", **options: Any) -> CloudProvider:
    stream_usage = options.pop("stream_usage", True)
    endpoint = CloudEndpoint("team", kind, url, "big-model", NAME, stream_usage=stream_usage)
    key = options.pop("key", KEY)
    return CloudProvider(endpoint, lambda: key, **options)


def chat() -> list[ChatMessage]:
    return [ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION)]


def answer(
    client: CloudProvider, messages: list[ChatMessage] | None = None
) -> tuple[str, GenerationStats]:
    generation = client.stream_chat(messages or chat(), GenerationSettings(max_tokens=64))
    text = generation.run()
    assert generation.stats is not None
    return text, generation.stats


def models(client: CloudProvider) -> list[str]:
    """The other request a provider makes: the models list."""
    return client.test_connection()


def failure(client: CloudProvider) -> CloudError:
    with pytest.raises(CloudError) as caught:
        answer(client)
    return caught.value


def said(error: CloudError) -> tuple[str, str, str | None]:
    return str(error), error.hint, error.command


def openai_chunk(text: str | None = None, reason: str | None = None, **extra: Any) -> dict:
    delta = {"content": text} if text is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}


# --- what is sent ----------------------------------------------------------------------------


def test_the_openai_request_carries_exactly_the_compatible_fields() -> None:
    settings = GenerationSettings(temperature=0.2, top_p=0.9, top_k=5, max_tokens=64, seed=7)
    with FakeCloud("openai", key=KEY) as server:
        client = provider(server.url)
        generation = client.stream_chat(chat(), settings)
        generation.run()
        sent = server.chat_requests[0]
        assert sent.path == "/v1/chat/completions"
        assert sent.body == {
            "model": "big-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": QUESTION},
            ],
            "stream": True,
            "temperature": 0.2,
            "top_p": 0.9,
            "max_tokens": 64,
            "seed": 7,
            "stream_options": {"include_usage": True},
        }
        headers = lowered(sent.headers.items())
        assert headers["authorization"] == f"Bearer {KEY}"
        assert headers["accept"] == "text/event-stream"
        assert "x-api-key" not in headers

        # No seed chosen, a server that cannot report usage, another model of the provider.
        plain = provider(server.url, stream_usage=False, model="bigger-model")
        generation = plain.stream_chat(chat(), GenerationSettings(temperature=0.0, max_tokens=8))
        generation.run()
        body = server.chat_requests[1].body
        assert set(body) == {"model", "messages", "stream", "temperature", "top_p", "max_tokens"}
        assert body["model"] == "bigger-model"
        assert generation.stats is not None
        assert (generation.stats.model, generation.stats.provider) == ("bigger-model", "team")
        assert provider(server.url, model="").model_name == "big-model"
        assert plain.warnings == []


def test_the_anthropic_request_takes_the_system_prompt_apart_and_alternates_turns() -> None:
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Answer in English."),
        ChatMessage("assistant", "An earlier answer."),
        ChatMessage("user", "Thanks."),
        ChatMessage("assistant", "You are welcome."),
        ChatMessage("user", "First part."),
        ChatMessage("user", "Second part."),
        ChatMessage("assistant", "A reply."),
        ChatMessage("user", QUESTION),
    ]
    with FakeCloud("anthropic", key=KEY) as server:
        client = provider(server.url, "anthropic")
        client.stream_chat(messages, GenerationSettings(temperature=1.5, max_tokens=64)).run()
        sent = server.chat_requests[0]
        assert sent.path == "/v1/messages"
        assert sent.body == {
            "model": "big-model",
            "messages": [
                {"role": "user", "content": "(continuing a conversation)"},
                {"role": "assistant", "content": "An earlier answer."},
                {"role": "user", "content": "Thanks."},
                {"role": "assistant", "content": "You are welcome."},
                {"role": "user", "content": "First part.\n\nSecond part."},
                {"role": "assistant", "content": "A reply."},
                {"role": "user", "content": QUESTION},
            ],
            "max_tokens": 64,
            "stream": True,
            "temperature": 1.0,  # the API's range ends at 1
            "system": "Be brief.\n\nAnswer in English.",
        }
        headers = lowered(sent.headers.items())
        assert headers["x-api-key"] == KEY
        assert headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers

        question = [ChatMessage("user", QUESTION)]
        client.stream_chat(question, GenerationSettings(temperature=0.5, max_tokens=9)).run()
        body = server.chat_requests[1].body
        assert body["messages"] == [{"role": "user", "content": QUESTION}]
        assert body["temperature"] == 0.5
        assert "system" not in body


def test_redirects_are_not_followed(api: ScriptedAPI) -> None:
    """A redirect could carry the key and the conversation to another host."""
    api.reply = Reply(307, {"Location": api.url + "/elsewhere", "Content-Type": "text/plain"})
    error = failure(provider(api.url))
    assert len(api.arrived) == 1
    assert said(error) == (
        f"{NAME} did not stream its answer (it sent text/plain).",
        "Check the base URL: it should point at the API, usually ending in /v1.",
        None,
    )


def test_the_systems_proxy_settings_are_obeyed(
    api: ScriptedAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", api.url.removesuffix("/v1"))
    api.reply = Reply(200, {"Content-Type": "application/json"}, b'{"data": [{"id": "via"}]}')
    assert provider("http://127.0.0.1:9/v1").test_connection() == ["via"]
    assert api.arrived[0].path == "http://127.0.0.1:9/v1/models"  # asked as a proxy

    monkeypatch.setenv("HTTPS_PROXY", api.url.removesuffix("/v1"))
    api.reply = Reply(403, {"Content-Length": "0"})
    with pytest.raises(CloudUnreachableError) as caught:
        provider("https://api.example.com/v1").test_connection()
    assert said(caught.value) == (
        "The proxy refused the connection to api.example.com.",
        "Check the system's proxy settings.",
        None,
    )


def test_the_timeouts_given_are_the_ones_used() -> None:
    client = CloudProvider(
        CloudEndpoint("team", "openai", "http://127.0.0.1:9/v1", "m"),
        lambda: KEY,
        connect_timeout_s=2.0,
        read_timeout_s=0.3,
    )
    timeout = client._client.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (2.0, 0.3, 0.3, 0.3)


def test_nothing_is_sent_without_the_switch_or_a_key(api: ScriptedAPI) -> None:
    with pytest.raises(CloudDisabledError) as off:
        provider(api.url, allowed=lambda: False).test_connection()
    assert said(off.value) == (
        "Cloud models are switched off, so nothing was sent.",
        "Turn cloud models on in the cloud settings to ask one.",
        None,
    )
    with pytest.raises(MissingKeyError) as no_key:
        answer(provider(api.url, key=""))
    assert said(no_key.value) == (
        f"No API key is stored for {NAME}.",
        "Add the provider's key in the cloud settings.",
        "offline-assistant cloud key team",
    )
    assert api.arrived == []


# --- what the stream says --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_usage_and_timing_reach_the_statistics(kind: CloudKind) -> None:
    with FakeCloud(kind, key=KEY) as server:
        started = time.perf_counter()
        text, stats = answer(provider(server.url, kind))
        elapsed = time.perf_counter() - started
    assert text == "Paris is the capital of France."
    # The stand-in counts words: the system prompt is a message for OpenAI, apart for Anthropic.
    prompt = 8 if kind == "openai" else 6
    assert (stats.prompt_tokens, stats.evaluated_prompt_tokens) == (prompt, prompt)
    assert stats.completion_tokens == 6
    assert stats.stop_reason == "stop"
    assert stats.ttft_s is not None and stats.tokens_per_s is not None
    assert 0 < stats.ttft_s <= stats.total_s <= elapsed
    # Tokens after the first one arrived, over the time since then: at least the average.
    assert stats.tokens_per_s >= stats.completion_tokens / stats.total_s


def test_an_openai_stream_may_end_on_a_finish_reason_without_done(api: ScriptedAPI) -> None:
    api.reply.body = sse(
        "",  # keep-alive lines carry nothing
        openai_chunk(usage={"prompt_tokens": None, "completion_tokens": None}),
        {"choices": [{"index": 0, "delta": None, "finish_reason": None}]},
        openai_chunk("Paris"),
        openai_chunk(" it is.", "length"),
    )
    text, stats = answer(provider(api.url))
    assert text == "Paris it is."
    assert stats.stop_reason == "length"
    assert (stats.prompt_tokens, stats.completion_tokens) == (0, 0)
    assert stats.tokens_per_s is None  # no usage: no rate to report


def test_an_anthropic_stream_names_events_and_skips_what_is_not_text(api: ScriptedAPI) -> None:
    api.reply.body = sse(
        "",
        {"type": "message_start", "message": {"usage": {"input_tokens": None}}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "text": "hmm"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ""}},
        ("content_block_delta", {"delta": {"type": "text_delta", "text": "Paris."}}),
        {"type": "message_delta", "delta": None, "usage": {"output_tokens": None}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {}},
        ("message_stop", {}),  # the kind comes from the event's name
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "late"}},
    )
    text, stats = answer(provider(api.url, "anthropic"))
    assert text == "Paris."
    assert stats.stop_reason == "length"
    assert (stats.prompt_tokens, stats.completion_tokens) == (0, 0)

    api.reply.body = sse(
        {"type": "message_start", "message": {"usage": {"input_tokens": 12}}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Yes."}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    )
    text, stats = answer(provider(api.url, "anthropic"))
    assert (text, stats.stop_reason) == ("Yes.", "stop")
    assert (stats.prompt_tokens, stats.completion_tokens) == (12, 2)


@pytest.mark.parametrize(
    ("kind", "event", "expected"),
    [
        (
            "openai",
            {"error": {"message": f"Slow down, {KEY}", "type": "rate_limit_exceeded"}},
            (
                CloudRateLimitError,
                f"{NAME} stopped the answer: Slow down, {MASKED}",
                "Wait a moment and ask again.",
            ),
        ),
        (
            "openai",
            {"error": {"message": "Boom", "type": "server_error"}},
            (
                CloudStreamError,
                f"{NAME} stopped the answer with an error: Boom",
                "Ask again; if it keeps happening, try another model.",
            ),
        ),
        (
            "openai",
            {"error": "plain words"},
            (
                CloudStreamError,
                f"{NAME} stopped the answer with an error: plain words",
                "Ask again; if it keeps happening, try another model.",
            ),
        ),
        (
            "anthropic",
            ("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}),
            (
                CloudRateLimitError,
                f"{NAME} stopped the answer: Overloaded",
                "Wait a moment and ask again.",
            ),
        ),
        (
            "anthropic",
            {"type": "error"},
            (
                CloudStreamError,
                f"{NAME} stopped the answer with an error: ",
                "Ask again; if it keeps happening, try another model.",
            ),
        ),
    ],
)
def test_an_error_inside_the_stream_is_named(
    api: ScriptedAPI, kind: CloudKind, event: object, expected: tuple[type, str, str]
) -> None:
    first = (
        openai_chunk("Par")
        if kind == "openai"
        else {
            "type": "content_block_delta",
            "delta": {"type": "text_delta", "text": "Par"},
        }
    )
    api.reply.body = sse(first, event)
    error = failure(provider(api.url, kind))
    assert (type(error), str(error), error.hint) == expected


@pytest.mark.parametrize(
    ("kind", "body", "message", "hint"),
    [
        (
            "openai",
            sse("{not json"),
            f"{NAME} sent an answer that could not be read.",
            "Check that the base URL points at an OpenAI-compatible API; then ask again.",
        ),
        (
            "anthropic",
            sse("{not json"),
            f"{NAME} sent an answer that could not be read.",
            "Check that the base URL points at an Anthropic API; then ask again.",
        ),
        ("openai", sse([1, 2]), f"{NAME} sent an unexpected answer.", ""),
        (
            "openai",
            sse(openai_chunk("Par")),
            f"{NAME}'s answer broke off before it was finished.",
            "The part received is kept. Ask again to get the whole answer.",
        ),
    ],
)
def test_an_unreadable_or_unfinished_stream_is_named(
    api: ScriptedAPI, kind: CloudKind, body: bytes, message: str, hint: str
) -> None:
    api.reply.body = body
    error = failure(provider(api.url, kind))
    assert (type(error), str(error), error.hint) == (CloudStreamError, message, hint)


@pytest.mark.parametrize(
    ("content_type", "streams"),
    [
        ("text/event-stream; charset=utf-8", True),
        ("Text/Event-Stream", True),
        ("application/json", False),
        (None, False),
    ],
)
def test_only_an_event_stream_is_read_as_an_answer(
    api: ScriptedAPI, content_type: str | None, streams: bool
) -> None:
    api.reply.headers = {"Content-Type": content_type} if content_type else {}
    api.reply.body = sse(openai_chunk("Paris.", "stop"), "[DONE]")
    if streams:
        assert answer(provider(api.url))[0] == "Paris."
        return
    error = failure(provider(api.url))
    assert (
        str(error)
        == f"{NAME} did not stream its answer (it sent {content_type or 'no content type'})."
    )


# --- what an HTTP status means ------------------------------------------------------------------

KEY_HINT = "Check that the key is right and still valid, and store it again."
LIMIT_HINT = "Wait a moment and ask again, or check the account's usage limits."
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("reply", "kind", "message", "hint"),
    [
        (
            Reply(
                401, JSON, json.dumps({"error": {"message": f"Incorrect API key: {KEY}"}}).encode()
            ),
            CloudKeyError,
            f"{NAME} rejected the API key (401). It said: Incorrect API key: {MASKED}",
            KEY_HINT,
        ),
        (
            Reply(403, JSON, b'{"error": "forbidden"}'),
            CloudKeyError,
            f"{NAME} rejected the API key (403). It said: forbidden",
            KEY_HINT,
        ),
        (
            Reply(429, {**JSON, "Retry-After": "7"}, b'{"error": {"message": "Slow down"}}'),
            CloudRateLimitError,
            f"{NAME} is limiting requests right now (429). It said: Slow down",
            "Try again in 7 seconds, or check the account's usage limits.",
        ),
        (
            Reply(429, {**JSON, "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, b"{}"),
            CloudRateLimitError,
            f"{NAME} is limiting requests right now (429).",
            LIMIT_HINT,
        ),
        (
            Reply(429, {"Retry-After": "-3"}, b""),
            CloudRateLimitError,
            f"{NAME} is limiting requests right now (429).",
            "Try again in 0 seconds, or check the account's usage limits.",
        ),
        (
            Reply(404, {"Content-Type": "text/plain"}, b"Not   Found\n"),
            CloudURLError,
            f"{NAME} has no such endpoint or model (404). It said: Not Found",
            "Check the base URL (it usually ends in /v1) and the model name.",
        ),
        (
            Reply(500, {}, b""),
            CloudServerError,
            f"{NAME} had a problem of its own (500).",
            "Try again later; nothing is wrong on this computer.",
        ),
        (
            Reply(502, {**JSON, "Content-Length": "100"}, b'{"err'),  # the body breaks off
            CloudServerError,
            f"{NAME} had a problem of its own (502).",
            "Try again later; nothing is wrong on this computer.",
        ),
        (
            Reply(
                400,
                JSON,
                b'{"type": "error", "error": {"type": "invalid_request_error",'
                b' "message": "max_tokens too large"}}',
            ),
            CloudRequestError,
            f"{NAME} refused the request (400). It said: max_tokens too large",
            "Check the model name; a setting like the longest answer may be too large for it.",
        ),
        (
            Reply(422, JSON, b'{"message": "top level"}'),
            CloudRequestError,
            f"{NAME} refused the request (422). It said: top level",
            "Check the model name; a setting like the longest answer may be too large for it.",
        ),
        (
            Reply(400, JSON, b"[1, 2]"),
            CloudRequestError,
            f"{NAME} refused the request (400). It said: [1, 2]",
            "Check the model name; a setting like the longest answer may be too large for it.",
        ),
    ],
)
def test_each_refusal_says_what_the_server_said_without_the_key(
    api: ScriptedAPI, reply: Reply, kind: type, message: str, hint: str
) -> None:
    api.reply = reply
    for ask in (models, answer):
        with pytest.raises(CloudError) as caught:
            ask(provider(api.url))
        error = caught.value
        assert (type(error), str(error), error.hint) == (kind, message, hint)
        if kind is CloudKeyError:
            assert error.command == "offline-assistant cloud key team"
        if kind is CloudRateLimitError:
            expected = {"7": 7.0, "-3": 0.0}.get(reply.headers.get("Retry-After", ""))
            assert isinstance(error, CloudRateLimitError)
            assert error.retry_after_s == expected
    assert {a.path for a in api.arrived} == {"/v1/models", "/v1/chat/completions"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_models_list_that_is_not_an_api_is_named(api: ScriptedAPI, kind: CloudKind) -> None:
    expected = "Anthropic" if kind == "anthropic" else "OpenAI-compatible"
    for body in (b"<html>hello</html>", b"[1, 2]"):
        api.reply = Reply(200, {"Content-Type": "text/html"}, body)
        with pytest.raises(CloudURLError) as caught:
            provider(api.url, kind).test_connection()
        assert said(caught.value) == (
            f"{NAME} answered, but not like an {expected} API.",
            "Check the base URL: it usually ends in /v1.",
            None,
        )
    api.reply = Reply(
        200, JSON, json.dumps({"data": [{"id": "a"}, "junk", {"name": "b"}]}).encode()
    )
    assert provider(api.url, kind).test_connection() == ["a"]
    api.reply = Reply(200, JSON, b"{}")
    assert provider(api.url, kind).test_connection() == []
    api.reply = Reply(200, {**JSON, "Content-Length": "100"}, b'{"da')  # breaks off
    with pytest.raises(CloudStreamError) as cut:
        provider(api.url, kind).test_connection()
    assert said(cut.value) == (
        f"The connection to {NAME} broke off while it listed its models.",
        "Try again; if it keeps happening, check the network and the base URL.",
        None,
    )
    assert api.arrived[0].headers.get("anthropic-version") == (
        "2023-06-01" if kind == "anthropic" else None
    )


# --- what the connection does -------------------------------------------------------------------


def test_silence_before_the_answer_is_a_timeout(api: ScriptedAPI) -> None:
    api.reply = Reply(before_s=2.0)
    for ask in (models, answer):
        with pytest.raises(CloudTimeoutError) as caught:
            ask(provider(api.url, read_timeout_s=0.3))
        assert said(caught.value) == (
            f"{NAME} did not answer in time.",
            "Check the connection and try again; the provider may be busy.",
            None,
        )


def test_silence_in_the_middle_of_the_models_list_is_a_timeout(api: ScriptedAPI) -> None:
    api.reply = Reply(200, {**JSON, "Content-Length": "100"}, b'{"da', after_s=2.0)
    with pytest.raises(CloudTimeoutError) as caught:
        provider(api.url, read_timeout_s=0.3).test_connection()
    assert str(caught.value) == f"{NAME} did not answer in time."


def test_silence_during_the_answer_keeps_the_part_received(api: ScriptedAPI) -> None:
    api.reply = Reply(body=sse(openai_chunk("Par")), after_s=2.0)
    generation = provider(api.url, read_timeout_s=0.3).stream_chat(chat(), GenerationSettings())
    with pytest.raises(CloudTimeoutError) as caught:
        generation.run()
    assert generation.text == "Par"
    assert said(caught.value) == (
        f"{NAME} stopped sending its answer.",
        "The part received is kept. Ask again to get the whole answer.",
        None,
    )
    assert generation.stats is not None and generation.stats.stop_reason == "error"


def test_a_connection_cut_during_the_answer_is_named() -> None:
    with FakeCloud("openai", key=KEY) as server:
        server.fault.drop = True
        with pytest.raises(CloudStreamError) as caught:
            answer(provider(server.url))
    assert said(caught.value) == (
        f"The connection to {NAME} broke off during the answer.",
        "The part received is kept. Ask again to get the whole answer.",
        None,
    )


def test_nobody_listening_and_no_tls_are_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    for ask in (models, answer):
        with pytest.raises(CloudUnreachableError) as caught:
            ask(provider(f"http://127.0.0.1:{port}/v1"))
        assert said(caught.value) == (
            "127.0.0.1 could not be reached.",
            "Check the internet connection and the base URL.",
            None,
        )
    plain = ScriptedAPI()  # speaks plain HTTP to a client that expects TLS
    try:
        for ask in (models, answer):
            with pytest.raises(CloudTLSError) as tls:
                ask(provider(f"https://127.0.0.1:{plain.port}/v1"))
            assert said(tls.value) == (
                "A secure connection to 127.0.0.1 could not be made.",
                "Check the computer's date and time and any network that intercepts secure "
                "connections; the address must be the provider's own.",
                None,
            )
    finally:
        plain.close()


# --- addresses, keys and messages ----------------------------------------------------------------


def test_loopback_names() -> None:
    for host in (
        "localhost",
        "LOCALHOST",
        "localhost.localdomain",
        "app.localhost",
        "127.9.9.9",
        "[::1]",
    ):
        assert is_loopback(host), host
    for host in (
        "example.com",
        "10.0.0.1",
        "localhost.example.com",
        "::2",
        "mylocalhost",
        "X127.0.0.1",
    ):
        assert not is_loopback(host), host


@pytest.mark.parametrize(
    ("url", "message", "hint"),
    [
        (
            "http://127.0.0.1:port/v1",
            "'http://127.0.0.1:port/v1' is not a valid web address.",
            "Use the provider's API address, like https://api.openai.com/v1.",
        ),
        (
            "https://exa\tmple.com/v1",
            "'https://exa\\tmple.com/v1' is not a valid web address.",
            "Use the provider's API address, like https://api.openai.com/v1.",
        ),
        (
            "https://exa mple.com/v1",
            "'https://exa mple.com/v1' is not a valid web address.",
            "Use the provider's API address, like https://api.openai.com/v1.",
        ),
        (
            "https://api..example.com/v1",
            "'https://api..example.com/v1' is not a valid web address.",
            "Use the provider's API address, like https://api.openai.com/v1.",
        ),
        (
            "ftp://example.com/v1",
            "'ftp://example.com/v1' is not a web address.",
            "Use the provider's API address, starting with https://.",
        ),
        (
            "https:///v1",
            "'https:///v1' is not a web address.",
            "Use the provider's API address, starting with https://.",
        ),
        (
            "https://me@example.com/v1",
            "The address holds a user name or password.",
            "Leave it out of the address; the key is stored separately, in the keyring.",
        ),
        (
            "  http://example.com/v1/  ",
            "example.com would be reached without encryption (http).",
            "Use an https:// address. Plain http is allowed only for a server on this "
            "computer (localhost).",
        ),
    ],
)
def test_an_unusable_address_is_explained(url: str, message: str, hint: str) -> None:
    with pytest.raises(CloudURLError) as caught:
        check_base_url(url)
    assert said(caught.value) == (message, hint, None)


def test_addresses_are_cleaned() -> None:
    assert check_base_url("  https://api.example.com/v1//  ") == "https://api.example.com/v1"
    assert check_base_url("HTTPS://api.example.com/v1") == "HTTPS://api.example.com/v1"
    assert check_base_url("https://api.example.com/X/") == "https://api.example.com/X"
    assert check_base_url("http://[::1]:8080/v1") == "http://[::1]:8080/v1"


def test_keys_are_masked_and_scrubbed_from_what_servers_say() -> None:
    assert mask_key(None) == mask_key("") == "no key"
    assert mask_key("sk-12345678") == "••••••••"  # 11 characters: too short to show any
    assert mask_key("sk-123456789") == "sk-…6789"
    key = "sk-abcdefghijklm"  # 16 characters: long enough to be echoed cut short
    assert scrub(f"key {key} and {key[:-4]}... and ...{key[4:]}", key) == (
        "key sk-…jklm and …... and ...…"
    )
    short = "sk-abcdefghijkl"  # 15: its pieces are too short to hunt for
    assert scrub(f"{short[:-4]} {short[4:]}", short) == f"{short[:-4]} {short[4:]}"
    assert scrub("a  b\n\t c", None) == "a b c"
    assert scrub("x" * 300, None) == "x" * 300
    assert scrub("x" * 301, None) == "x" * 299 + "…"


def test_a_cancel_during_the_stream_is_recorded_as_such() -> None:
    with FakeCloud("openai", key=KEY) as server:
        cancel = CancelToken()
        generation = provider(server.url).stream_chat(chat(), GenerationSettings(), cancel)
        for _ in generation:
            cancel.cancel()
        assert generation.text == "Paris "
        assert generation.stats is not None and generation.stats.stop_reason == "cancelled"

    # Stopped just as the last piece arrived: still the user's stop.
    with FakeCloud("openai", key=KEY, reply="Paris.") as server:
        cancel = CancelToken()
        generation = provider(server.url).stream_chat(chat(), GenerationSettings(), cancel)
        for _ in generation:
            cancel.cancel()
        assert generation.text == "Paris."
        assert generation.stats is not None and generation.stats.stop_reason == "cancelled"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_without_usage_counts_nothing(api: ScriptedAPI, kind: CloudKind) -> None:
    if kind == "openai":
        api.reply.body = sse(openai_chunk("Yes.", "stop"), "[DONE]")
    else:
        api.reply.body = sse(
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Yes."}},
            {"type": "message_stop"},
        )
    text, stats = answer(provider(api.url, kind, stream_usage=False))
    assert text == "Yes."
    assert (stats.prompt_tokens, stats.completion_tokens, stats.stop_reason) == (0, 0, "stop")
