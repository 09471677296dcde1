"""The HTTP side of the local API: a Starlette app served by uvicorn on a thread of its own.

Safe by default, unlike most local model servers: it listens on the loopback address only,
every request needs the token (``Authorization: Bearer``), requests must name this computer in
their ``Host`` header (a web page cannot reach it through DNS rebinding), and bodies are
limited in size. Listening on the network needs ``allow_network`` and a token, and warns.

A client that goes away stops its answer at the next token: a stream notices when the
connection closes, a plain request watches for the disconnect while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.api import protocol
from assistant.api.jobs import AnswerQueue, Ticket
from assistant.api.protocol import ApiError, ChatJob
from assistant.engine.base import GenerationStats
from assistant.errors import AssistantError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1024 * 1024
"""A chat that fills a 32k-token context is ~150 kB of text; a megabyte is plenty."""
START_TIMEOUT_S = 10.0
NETWORK_WARNING = (
    "The local API listens on {host}: other computers on the network can use the model with "
    "the token. Anyone who sees the token can, too."
)


class ApiConfigError(AssistantError):
    """The API cannot start as asked (an address it must not or cannot listen on)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_network: bool, token: str | None) -> list[str]:
    """Refuse an address other computers could reach unless explicitly allowed and protected
    by a token; returns the warnings to show when it is allowed."""
    if is_loopback(host):
        return []
    if not allow_network:
        raise ApiConfigError(
            f"Refusing to listen on {host}: other computers could then use the model.",
            hint="Listen on 127.0.0.1 (this computer only), or allow the network explicitly "
            "if you mean it (a token is then required).",
            command=f"offline-assistant serve --host {host} --allow-network",
        )
    if not token:
        raise ApiConfigError(
            f"Refusing to listen on {host} without a token: anyone on the network could use "
            "the model.",
            hint="Keep the token: clients then send the token shown at start.",
            command=f"offline-assistant serve --host {host} --allow-network",
        )
    return [NETWORK_WARNING.format(host=host)]


# --- the ASGI app ----------------------------------------------------------------------------


class _Events:
    """``JobEvents`` that hand each event to the server's event loop (called on the queue's
    thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def _put(self, kind: str, value: Any) -> None:
        # RuntimeError: the server stopped meanwhile, and nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def started(self, model_id: str) -> None:
        self._put("started", model_id)

    def text(self, text: str) -> None:
        self._put("text", text)

    def finished(self, stats: GenerationStats) -> None:
        self._put("finished", stats)

    def failed(self, error: ApiError) -> None:
        self._put("failed", error)

    async def get(self) -> tuple[str, Any]:
        return await self._queue.get()

    def get_nowait(self) -> tuple[str, Any] | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None


class _LocalHostsOnly:
    """Answer only requests addressed to this computer by name (DNS-rebinding guard)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = urlsplit("//" + host).hostname or ""
            if not is_loopback(name):
                error = ApiError(400, "This API answers only requests for 127.0.0.1/localhost.")
                await _error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error_response(error: ApiError) -> Response:
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _sse(data: dict[str, Any]) -> str:
    return "data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n\n"


class _Api:
    """The endpoints, over one answer queue."""

    def __init__(self, queue: AnswerQueue, token: str | None, max_body: int) -> None:
        self.queue = queue
        self._token = token.encode() if token else None
        self._max_body = max_body
        self._tickets: set[Ticket] = set()
        self._lock = threading.Lock()

    def cancel_all(self) -> None:
        """Stop every answer in progress (the server is stopping); any thread."""
        with self._lock:
            tickets = list(self._tickets)
        for ticket in tickets:
            ticket.cancel()

    def _check_token(self, request: Request) -> None:
        if self._token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise ApiError(
                401,
                "A valid token is needed: send 'Authorization: Bearer TOKEN' with the token "
                "shown in Offline Assistant's Settings → Local API.",
                code="invalid_api_key",
            )

    async def _read_json(self, request: Request) -> Any:
        too_big = ApiError(
            413, f"The request is larger than {self._max_body:,} bytes.", code="request_too_large"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise too_big
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self._max_body:
                raise too_big
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"The request body is not valid JSON ({exc}).") from None

    # --- endpoints -------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        self._check_token(request)
        models = await asyncio.to_thread(self.queue.models)
        return JSONResponse({"object": "list", "data": [m.to_dict() for m in models]})

    async def get_model(self, request: Request) -> Response:
        self._check_token(request)
        wanted = request.path_params["model"]
        models = await asyncio.to_thread(self.queue.models)
        for model in models:
            if model.id == wanted:
                return JSONResponse(model.to_dict())
        raise protocol.unknown_model(wanted, [m.id for m in models])

    async def chat_completions(self, request: Request) -> Response:
        self._check_token(request)
        try:
            body = await self._read_json(request)
        except ClientDisconnect:
            return Response(status_code=499)
        job = protocol.parse_chat_request(body, self.queue.generation_defaults())
        events = _Events(asyncio.get_running_loop())
        ticket = self.queue.submit(job, events)
        with self._lock:
            self._tickets.add(ticket)
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, ticket))
        handed_over = False
        try:
            kind, value = await events.get()  # waits its turn in the queue
            if kind == "failed":
                return _error_response(value)
            model = value if kind == "started" else job.model or ""
            if job.stream and kind == "started":
                watcher.cancel()  # from here the streaming response watches the connection
                handed_over = True
                return StreamingResponse(
                    self._stream(job, model, events, ticket),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            return await self._whole(model, events, (kind, value))
        finally:
            watcher.cancel()
            if not handed_over:
                self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        ticket.cancel()  # harmless once the answer ended; stops it if the client left
        with self._lock:
            self._tickets.discard(ticket)

    async def _whole(self, model: str, events: _Events, first: tuple[str, Any]) -> Response:
        texts: list[str] = []
        kind, value = first
        while kind in ("started", "text"):
            if kind == "text":
                texts.append(value)
            kind, value = await events.get()
        if kind == "failed":
            return _error_response(value)
        stats: GenerationStats = value
        body = protocol.completion(
            protocol.completion_id(), protocol.now(), model, "".join(texts), stats
        )
        return JSONResponse(body)

    async def _stream(
        self, job: ChatJob, model: str, events: _Events, ticket: Ticket
    ) -> AsyncIterator[str]:
        ident, created = protocol.completion_id(), protocol.now()
        usage = job.include_usage
        try:
            yield _sse(
                protocol.chunk(
                    ident, created, model, {"role": "assistant", "content": ""}, with_usage=usage
                )
            )
            while True:
                kind, value = await events.get()
                if kind == "text":
                    # Pieces that arrived meanwhile go out together: fewer, larger writes.
                    texts = [value]
                    while (extra := events.get_nowait()) is not None:
                        if extra[0] != "text":
                            break
                        texts.append(extra[1])
                    yield _sse(
                        protocol.chunk(
                            ident, created, model, {"content": "".join(texts)}, with_usage=usage
                        )
                    )
                    if extra is None:
                        continue
                    kind, value = extra
                if kind == "failed":
                    yield _sse(value.body())
                    return
                if kind == "finished":
                    stats: GenerationStats = value
                    finish = protocol.finish_reason(stats)
                    yield _sse(protocol.chunk(ident, created, model, {}, finish, with_usage=usage))
                    if usage:
                        yield _sse(protocol.usage_chunk(ident, created, model, stats))
                    yield "data: [DONE]\n\n"
                    return
        finally:
            self._forget(ticket)  # also when the client went away mid-stream


async def _cancel_on_disconnect(request: Request, ticket: Ticket) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            ticket.cancel()
            return


async def _on_api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return _error_response(ApiError(exc.status_code, str(exc.detail), kind=kind))


async def _on_bug(_request: Request, exc: Exception) -> Response:
    return _error_response(protocol.api_error_for(exc))


def create_app(
    queue: AnswerQueue,
    *,
    token: str | None,
    max_body: int = MAX_BODY_BYTES,
    loopback_only: bool = True,
) -> tuple[ASGIApp, _Api]:
    """The ASGI app over ``queue`` and the object holding its endpoints (to stop answers)."""
    api = _Api(queue, token, max_body)
    app = Starlette(
        routes=[
            Route("/v1/models", api.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", api.get_model, methods=["GET"]),
            Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        ],
        exception_handlers={
            ApiError: _on_api_error,
            HTTPException: _on_http_error,
            Exception: _on_bug,
        },
    )
    return (_LocalHostsOnly(app) if loopback_only else app), api


# --- running it ------------------------------------------------------------------------------


class ApiServer:
    """The local API running on a thread of its own; ``start()`` returns once it listens.

    ``is_running``, ``address`` and ``base_url`` are what a front end shows ("Local API on at
    http://127.0.0.1:8765/v1"). ``port`` 0 picks a free port (tests).
    """

    def __init__(
        self,
        queue: AnswerQueue,
        *,
        token: str | None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        allow_network: bool = False,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.warnings = check_bind(host, allow_network=allow_network, token=token)
        self.host = host
        self.port = port
        self.token = token
        self._app, self._api = create_app(
            queue, token=token, max_body=max_body, loopback_only=is_loopback(host)
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def is_running(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and bool(self._server is not None and self._server.started)
        )

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}/v1"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Listen and serve on a new thread; ``ApiConfigError`` when the port is taken."""
        import uvicorn  # imported here: the app starts faster when the API is off

        sock = self._bind()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,  # the app's logging stays as it is
            access_log=False,  # the app logs what matters; one line per token stream is noise
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise ApiConfigError(f"The local API did not start within {timeout:g} s.")
            time.sleep(0.01)
        if not self._server.started:
            raise ApiConfigError("The local API stopped while starting; see the log.")
        log.info("Local API listening at %s", self.base_url)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host.strip("[]"), self.port))
        except OSError as exc:
            sock.close()
            raise ApiConfigError(
                f"The local API cannot listen on {self.address} ({exc.strerror or exc}).",
                hint="Another program may use this port: pick another one in Settings → Local API.",
                command="offline-assistant serve --port PORT",
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answers in progress, close the connections and end the thread."""
        self._api.cancel_all()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("The local API did not stop within %g s", timeout)
        self._thread = None
