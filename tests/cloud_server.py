"""Stand-ins for an OpenAI-compatible API and Anthropic's Messages API on 127.0.0.1.

Both stream server-sent events in the real APIs' shapes:

- OpenAI-compatible: ``POST {base}/chat/completions`` with ``stream: true`` answers
  ``chat.completion.chunk`` events (``choices[0].delta.content``), a usage chunk when
  ``stream_options.include_usage`` is asked for, then ``data: [DONE]``;
- Anthropic: ``POST {base}/messages`` answers ``message_start``, ``content_block_start``,
  ``content_block_delta`` (``text_delta``), ``content_block_stop``, ``message_delta`` (stop
  reason, output tokens) and ``message_stop``;
- both: ``GET {base}/models``, and errors as JSON bodies the way each API sends them.

``base`` is ``/v1``. The server checks the key (``Authorization: Bearer`` or ``x-api-key``) and
records every request (``requests``: method, path, headers, parsed body), so a test can count
what arrived and compare it with what was previewed.

Faults (``server.fault``): ``status`` (answer with this HTTP status, 429 with Retry-After),
``drop`` (close the connection mid-stream), ``truncate`` (end the stream cleanly but without its
end event), ``malformed`` (a data line that is not JSON), ``slow`` (wait ``slow_s`` before the
first event), ``stream_error`` (an error event inside the stream).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["openai", "anthropic"]


@dataclass
class Fault:
    status: int | None = None
    retry_after: str | None = "7"
    drop: bool = False
    truncate: bool = False
    malformed: bool = False
    slow_s: float = 0.0
    stream_error: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


class FakeCloud:
    """One API of ``kind`` on a free port. ``reply`` is the answer, streamed in pieces."""

    def __init__(
        self,
        kind: Kind = "openai",
        *,
        key: str = "sk-test-0123456789abcdef",
        reply: str = "Paris is the capital of France.",
        models: tuple[str, ...] = ("big-model", "bigger-model"),
    ) -> None:
        self.kind = kind
        self.key = key
        self.reply = reply
        self.models = models
        self.fault = Fault()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def start(self) -> FakeCloud:
        owner = self

        class Handler(_Handler):
            cloud = owner

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, record: Recorded) -> None:
        with self._lock:
            self.requests.append(record)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-stream is part of the tests


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeCloud
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ----------------------------------------------------------------------------

    def _authorized(self) -> bool:
        cloud = self.cloud
        if cloud.kind == "anthropic":
            return self.headers.get("x-api-key") == cloud.key
        return self.headers.get("Authorization") == f"Bearer {cloud.key}"

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str) -> None:
        headers = {}
        if status == 429 and self.cloud.fault.retry_after:
            headers["Retry-After"] = self.cloud.fault.retry_after
        if self.cloud.kind == "anthropic":
            body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": kind, "code": None}}
        self._json(status, body, headers)

    def _auth_failed(self) -> None:
        # Real APIs echo part of a wrong key; the client must not pass it on.
        sent = self.headers.get("x-api-key") or self.headers.get("Authorization", "")
        self._error(401, f"Incorrect API key provided: {sent}", "authentication_error")

    def do_GET(self) -> None:
        self.cloud.record(Recorded("GET", self.path, dict(self.headers.items())))
        if self.path != "/v1/models":
            self._error(404, "Not found", "not_found_error")
            return
        if not self._authorized():
            self._auth_failed()
            return
        self._json(200, {"object": "list", "data": [{"id": m} for m in self.cloud.models]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unreadable": raw.decode(errors="replace")}
        self.cloud.record(Recorded("POST", self.path, dict(self.headers.items()), body))
        expected = "/v1/messages" if self.cloud.kind == "anthropic" else "/v1/chat/completions"
        if self.path != expected:
            self._error(404, "Not found", "not_found_error")
            return
        if not self._authorized():
            self._auth_failed()
            return
        fault = self.cloud.fault
        if fault.status is not None:
            kinds = {429: "rate_limit_error", 500: "api_error", 400: "invalid_request_error"}
            self._error(fault.status, "Injected failure", kinds.get(fault.status, "api_error"))
            return
        self._stream(body)

    # --- streams -------------------------------------------------------------------------------

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # Chunked, as the real APIs send it: a connection cut mid-answer is then a broken
        # response, not one that merely ended early.
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send(self, data: str, event: str | None = None) -> None:
        text = ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()
        self.wfile.write(f"{len(text):x}\r\n".encode() + text + b"\r\n")
        self.wfile.flush()

    def _end_body(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _pieces(self) -> list[str]:
        words = self.cloud.reply.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    def _stream(self, body: dict[str, Any]) -> None:
        fault = self.cloud.fault
        self._start_stream()
        if fault.slow_s:
            time.sleep(fault.slow_s)
        if self.cloud.kind == "anthropic":
            ended = self._stream_anthropic(body)
        else:
            ended = self._stream_openai(body)
        if ended:
            self._end_body()

    def _stream_openai(self, body: dict[str, Any]) -> bool:
        """Stream the answer; False when the connection was cut (no end of body)."""
        fault = self.cloud.fault
        model = body.get("model", "")
        pieces = self._pieces()
        for index, piece in enumerate(pieces):
            if fault.drop and index == len(pieces) // 2:
                self.wfile.flush()
                self.connection.shutdown(2)  # the connection breaks mid-answer
                return False
            if fault.malformed and index == 1:
                self._send("{not json")
                return True
            if fault.stream_error and index == 1:
                self._send(json.dumps({"error": {"message": "overloaded", "type": "server"}}))
                return True
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            if index == 0:
                chunk["choices"][0]["delta"]["role"] = "assistant"
            self._send(json.dumps(chunk))
        if fault.truncate:
            return True
        done = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        self._send(json.dumps(done))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces)}
            self._send(json.dumps({"id": "chatcmpl-1", "choices": [], "usage": usage}))
        self._send("[DONE]")
        return True

    def _stream_anthropic(self, body: dict[str, Any]) -> bool:
        fault = self.cloud.fault
        pieces = self._pieces()
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", ""),
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": prompt, "output_tokens": 1},
            },
        }
        self._send(json.dumps(start), "message_start")
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
        self._send(json.dumps(block), "content_block_start")
        self._send(json.dumps({"type": "ping"}), "ping")
        for index, piece in enumerate(pieces):
            if fault.drop and index == len(pieces) // 2:
                self.connection.shutdown(2)
                return False
            if fault.malformed and index == 1:
                self._send("{not json", "content_block_delta")
                return True
            if fault.stream_error and index == 1:
                error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
                self._send(json.dumps(error), "error")
                return True
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            self._send(json.dumps(delta), "content_block_delta")
        if fault.truncate:
            return True
        self._send(json.dumps({"type": "content_block_stop", "index": 0}), "content_block_stop")
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": len(pieces)},
        }
        self._send(json.dumps(end), "message_delta")
        self._send(json.dumps({"type": "message_stop"}), "message_stop")
        return True
