"""Cloud providers: OpenAI-compatible Chat Completions and Anthropic Messages, streamed.

Both speak HTTP through ``httpx2`` (already the Hub client's transport) and read the stream with
its server-sent-events parser; nothing here hand-parses HTTP. A provider is a ``ChatProvider``
of kind ``remote``: the runner gives it its own thread, so a cloud answer never unloads the
local model.

What a user can act on becomes a ``CloudError`` subclass with a sentence and a hint (key
rejected, rate limited, unreachable, timed out, TLS, bad base URL, a broken stream). The key is
read when a request is made (so a new key counts at once), sent only in a header, and never
written into an exception: text the server sends back is scrubbed of it first.

Rules that hold for every request: HTTPS unless the host is this computer (loopback); timeouts
on connecting and between streamed bytes; the system's proxy settings (``trust_env``); no
redirects (a redirect could carry the key somewhere the user did not choose).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

# httpx2 is imported where it is used: at module level it added ~45 ms to the app's start,
# which needs no cloud client until a cloud provider is asked.
if TYPE_CHECKING:
    import httpx2


from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    Generation,
    GenerationSettings,
    GenerationStats,
    ProviderKind,
    StopReason,
)
from assistant.errors import AssistantError, is_tls_failure

CloudKind = Literal["openai", "anthropic"]
CLOUD_KINDS: tuple[CloudKind, ...] = ("openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
"""The longest wait for the next bytes of an answer (large models can think a while)."""


# --- errors ------------------------------------------------------------------------------------


class CloudError(AssistantError):
    """A cloud request failed for a reason the user can act on. Never holds the key."""


class CloudDisabledError(CloudError):
    """Cloud models are switched off (the global switch)."""


class MissingKeyError(CloudError):
    """No key is stored for this provider."""


class CloudURLError(CloudError):
    """The base URL is not usable (not HTTPS for a remote host, malformed, no such endpoint)."""


class CloudKeyError(CloudError):
    """401/403: the provider rejected the key."""


class CloudRateLimitError(CloudError):
    """429: too many requests, or the account's quota is used up."""

    retry_after_s: float | None = None


class CloudRequestError(CloudError):
    """400/404/422: the provider refused the request (often an unknown model name)."""


class CloudServerError(CloudError):
    """5xx: the provider has a problem of its own."""


class CloudUnreachableError(CloudError):
    """No connection: no network, a wrong host name, a proxy that refused."""


class CloudTimeoutError(CloudError):
    """The provider did not answer within the timeout."""


class CloudTLSError(CloudError):
    """The secure connection failed (certificate or TLS problem)."""


class CloudStreamError(CloudError):
    """The answer's stream broke off or could not be read."""


# --- endpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudEndpoint:
    """Where a cloud provider lives: no key here, so this may be saved and shown anywhere.

    ``base_url`` includes the API version (``https://api.openai.com/v1``); requests go to
    ``/chat/completions`` (openai) or ``/messages`` (anthropic) below it.
    ``stream_usage``: ask for token counts in the stream (some compatible servers refuse it).
    """

    name: str
    kind: CloudKind
    base_url: str
    model: str
    label: str = ""
    stream_usage: bool = True

    @property
    def display_name(self) -> str:
        return self.label or self.name


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """``url`` cleaned up (no trailing slash), or ``CloudURLError`` saying what is wrong.

    Plain ``http`` is accepted only for this computer: a key and a conversation must not
    cross a network unencrypted."""
    cleaned = url.strip().rstrip("/")
    try:
        if any(char.isspace() or not char.isprintable() for char in cleaned):
            raise ValueError  # a space or a control character
        parts = urlsplit(cleaned)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        host.encode("idna")  # UnicodeError (a ValueError) for an empty or too long label
    except ValueError:
        raise CloudURLError(
            f"{cleaned!r} is not a valid web address.",
            hint="Use the provider's API address, like https://api.openai.com/v1.",
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise CloudURLError(
            f"{cleaned!r} is not a web address.",
            hint="Use the provider's API address, starting with https://.",
        )
    if parts.username or parts.password:
        raise CloudURLError(
            "The address holds a user name or password.",
            hint="Leave it out of the address; the key is stored separately, in the keyring.",
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise CloudURLError(
            f"{host} would be reached without encryption (http).",
            hint="Use an https:// address. Plain http is allowed only for a server on this "
            "computer (localhost).",
        )
    return cleaned


def mask_key(key: str | None) -> str:
    """A key as it may be shown: its first three and last four characters at most."""
    if not key:
        return "no key"
    if len(key) < 12:
        return "•" * 8
    return f"{key[:3]}…{key[-4:]}"


# --- the provider --------------------------------------------------------------------------------

KeySource = Callable[[], "str | None"]
EndpointSource = Callable[[], CloudEndpoint]


class CloudProvider:
    """A cloud chat API as a ``ChatProvider``.

    ``endpoint`` and ``key`` are read at every request (an edited provider or a new key counts
    at once, although the runner keeps this object open); ``allowed`` is the global switch,
    also read at every request. ``transport`` is for tests that need one.
    """

    kind: ProviderKind = "remote"
    needs_key = True
    needs_network = True

    def __init__(
        self,
        endpoint: EndpointSource | CloudEndpoint,
        key: KeySource,
        *,
        model: str | None = None,
        allowed: Callable[[], bool] = lambda: True,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        import httpx2

        self._endpoint = endpoint if callable(endpoint) else (lambda: endpoint)
        self._key = key
        self._model = model or None
        self._allowed = allowed
        self.warnings: list[str] = []
        timeout = httpx2.Timeout(read_timeout_s, connect=connect_timeout_s)
        # trust_env: the system's proxy variables and certificate settings are obeyed.
        self._client = httpx2.Client(timeout=timeout, trust_env=True, follow_redirects=False)

    @property
    def endpoint(self) -> CloudEndpoint:
        return self._endpoint()

    @property
    def provider_name(self) -> str:
        return self.endpoint.name

    @property
    def model_name(self) -> str:
        return self._model or self.endpoint.model

    def close(self) -> None:
        self._client.close()

    # --- requests ----------------------------------------------------------------------------

    def _ready(self) -> tuple[CloudEndpoint, str, str]:
        """Endpoint, checked base URL and key, or the error that stops the request first."""
        endpoint = self.endpoint
        if not self._allowed():
            raise CloudDisabledError(
                "Cloud models are switched off, so nothing was sent.",
                hint="Turn cloud models on in the cloud settings to ask one.",
            )
        base = check_base_url(endpoint.base_url)
        key = self._key()
        if not key:
            raise MissingKeyError(
                f"No API key is stored for {endpoint.display_name}.",
                hint="Add the provider's key in the cloud settings.",
                command=f"offline-assistant cloud key {endpoint.name}",
            )
        return endpoint, base, key

    def _headers(self, kind: CloudKind, key: str) -> dict[str, str]:
        if kind == "anthropic":
            return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return {"Authorization": f"Bearer {key}"}

    def test_connection(self) -> list[str]:
        """Ask the provider for its models (free, sends no conversation): the model ids it
        offers. Raises the same ``CloudError``s a question would."""
        import httpx2

        endpoint, base, key = self._ready()
        request = self._client.build_request(
            "GET", f"{base}/models", headers=self._headers(endpoint.kind, key)
        )
        response = self._open(request, endpoint, key)
        try:
            response.read()
        except httpx2.TimeoutException as exc:
            raise _transport_error(exc, endpoint) from exc
        except httpx2.HTTPError as exc:  # it answered, then the connection broke off
            raise CloudStreamError(
                f"The connection to {endpoint.display_name} broke off while it listed its models.",
                hint="Try again; if it keeps happening, check the network and the base URL.",
            ) from exc
        finally:
            response.close()
        try:
            data = response.json().get("data", [])
            return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
        except (ValueError, AttributeError, KeyError) as exc:
            raise CloudURLError(
                f"{endpoint.display_name} answered, but not like an {_api_name(endpoint)} API.",
                hint="Check the base URL: it usually ends in /v1.",
            ) from exc

    def stream_chat(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Send ``messages`` (exactly these) and stream the answer.

        The connection is made and the status checked before returning, so a rejected key, a
        rate limit or an unreachable host fails here, before anything is saved as an answer.
        """
        endpoint, base, key = self._ready()
        model = self.model_name
        if endpoint.kind == "anthropic":
            url, body = f"{base}/messages", _anthropic_body(model, messages, settings)
        else:
            url, body = f"{base}/chat/completions", _openai_body(model, messages, settings)
            if endpoint.stream_usage:
                body["stream_options"] = {"include_usage": True}
        request = self._client.build_request(
            "POST",
            url,
            json=body,
            headers={**self._headers(endpoint.kind, key), "Accept": "text/event-stream"},
        )
        started = time.perf_counter()
        response = self._open(request, endpoint, key)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "text/event-stream":
            response.close()
            sent = content_type or "no content type"
            raise CloudStreamError(
                f"{endpoint.display_name} did not stream its answer (it sent {sent}).",
                hint="Check the base URL: it should point at the API, usually ending in /v1.",
            )
        # Filled in as the stream ends (also after a cancel or a failure).
        stats = GenerationStats(model=model, provider=endpoint.name)
        read = _read_anthropic if endpoint.kind == "anthropic" else _read_openai
        chunks = self._stream(response, read, stats, started, cancel, endpoint, key)
        return Generation(chunks, stats=stats)

    def _open(self, request: httpx2.Request, endpoint: CloudEndpoint, key: str) -> httpx2.Response:
        """Send ``request``; the response, its body not read yet, unless the status says the
        provider refused (then the error, with what the server said)."""
        import httpx2

        try:
            response = self._client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise _transport_error(exc, endpoint) from exc
        if response.status_code >= 400:
            try:
                response.read()
            except httpx2.HTTPError:
                pass  # a refusal whose body broke off: the status says enough
            finally:
                response.close()
            raise _status_error(response.status_code, response, endpoint, key)
        return response

    def _stream(
        self,
        response: httpx2.Response,
        read: Callable[[httpx2.EventSource, _Progress], Iterator[str]],
        stats: GenerationStats,
        started: float,
        cancel: CancelToken | None,
        endpoint: CloudEndpoint,
        key: str,
    ) -> Iterator[str]:
        import httpx2

        progress = _Progress(endpoint, key)
        stop: StopReason = "error"
        first: float | None = None
        try:
            for text in read(httpx2.EventSource(response), progress):
                if cancel is not None and cancel.cancelled:
                    stop = "cancelled"
                    return
                if first is None:
                    first = time.perf_counter()
                yield text
            if cancel is not None and cancel.cancelled:
                stop = "cancelled"
            elif not progress.finished:
                raise CloudStreamError(
                    f"{endpoint.display_name}'s answer broke off before it was finished.",
                    hint="The part received is kept. Ask again to get the whole answer.",
                )
            else:
                stop = "length" if progress.stop_reason == "length" else "stop"
        except httpx2.HTTPError as exc:
            raise _stream_error(exc, endpoint) from exc
        finally:
            response.close()
            ended = time.perf_counter()
            stats.prompt_tokens = progress.prompt_tokens
            stats.evaluated_prompt_tokens = progress.prompt_tokens
            stats.completion_tokens = progress.completion_tokens
            stats.total_s = ended - started
            if first is not None:
                stats.ttft_s = first - started
                if progress.completion_tokens and ended > first:
                    stats.tokens_per_s = progress.completion_tokens / (ended - first)
            stats.stop_reason = stop


class _Progress:
    """What the stream told us besides text: usage, how it ended."""

    def __init__(self, endpoint: CloudEndpoint, key: str) -> None:
        self.endpoint = endpoint
        self.key = key
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finished = False
        self.stop_reason = ""

    def event_json(self, data: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            raise CloudStreamError(
                f"{self.endpoint.display_name} sent an answer that could not be read.",
                hint="Check that the base URL points at an "
                f"{_api_name(self.endpoint)} API; then ask again.",
            ) from None
        if not isinstance(value, dict):
            raise CloudStreamError(f"{self.endpoint.display_name} sent an unexpected answer.")
        return value

    def stream_failure(self, error: Any) -> CloudError:
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        kind = error.get("type", "") if isinstance(error, dict) else ""
        said = scrub(str(message), self.key)
        if "rate" in str(kind) or "overloaded" in str(kind):
            return CloudRateLimitError(
                f"{self.endpoint.display_name} stopped the answer: {said}",
                hint="Wait a moment and ask again.",
            )
        return CloudStreamError(
            f"{self.endpoint.display_name} stopped the answer with an error: {said}",
            hint="Ask again; if it keeps happening, try another model.",
        )


def _read_openai(events: httpx2.EventSource, progress: _Progress) -> Iterator[str]:
    for event in events:
        if event.data.strip() == "[DONE]":
            progress.finished = True
            return
        if not event.data.strip():
            continue
        data = progress.event_json(event.data)
        if "error" in data:
            raise progress.stream_failure(data["error"])
        usage = data.get("usage")
        if isinstance(usage, dict):
            progress.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            progress.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                yield str(text)
            reason = choice.get("finish_reason")
            if reason:
                progress.stop_reason = str(reason)
    # Some compatible servers end without [DONE] once a finish reason was sent.
    progress.finished = progress.finished or bool(progress.stop_reason)


def _read_anthropic(events: httpx2.EventSource, progress: _Progress) -> Iterator[str]:
    for event in events:
        if not event.data.strip():
            continue
        data = progress.event_json(event.data)
        kind = data.get("type", event.event)
        if kind == "error":
            raise progress.stream_failure(data.get("error", {}))
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            progress.prompt_tokens = int(usage.get("input_tokens") or 0)
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield str(delta["text"])
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                progress.stop_reason = "length" if reason == "max_tokens" else str(reason)
            usage = data.get("usage") or {}
            if "output_tokens" in usage:
                progress.completion_tokens = int(usage["output_tokens"] or 0)
        elif kind == "message_stop":
            progress.finished = True
            return


# --- request bodies ------------------------------------------------------------------------------


def _openai_body(
    model: str, messages: list[ChatMessage], settings: GenerationSettings
) -> dict[str, Any]:
    # Only the sampling fields every compatible server accepts; the local-only ones
    # (top_k, min_p, repeat_penalty) would make a strict server refuse the request.
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.to_dict() for m in messages],
        "stream": True,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
    }
    if settings.seed is not None:
        body["seed"] = settings.seed
    return body


def _anthropic_body(
    model: str, messages: list[ChatMessage], settings: GenerationSettings
) -> dict[str, Any]:
    """Anthropic takes the system prompt apart and wants user and assistant turns to
    alternate, starting with the user: consecutive turns of one role are joined."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(continuing a conversation)"})
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": settings.max_tokens,
        "stream": True,
        "temperature": min(settings.temperature, 1.0),  # Anthropic's range is 0..1
    }
    if system:
        body["system"] = system
    return body


# --- errors from HTTP --------------------------------------------------------------------------


def scrub(text: str, key: str | None) -> str:
    """``text`` without ``key`` (nor a long piece of it), shortened for a message."""
    if key:
        text = text.replace(key, mask_key(key))
        if len(key) >= 16:  # servers echo a key cut short ("sk-abc...wxyz") too
            text = text.replace(key[:-4], "…").replace(key[4:], "…")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def _api_name(endpoint: CloudEndpoint) -> str:
    return "Anthropic" if endpoint.kind == "anthropic" else "OpenAI-compatible"


def _server_said(response: httpx2.Response, key: str) -> str:
    import httpx2

    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        said = error.get("message", "") if isinstance(error, dict) else str(error)
    except (ValueError, httpx2.HTTPError, httpx2.StreamError):
        # StreamError: the body broke off before it could be read whole.
        try:
            said = response.text
        except (httpx2.HTTPError, httpx2.StreamError):
            said = ""
    return scrub(str(said), key)


def _status_error(
    status: int, response: httpx2.Response, endpoint: CloudEndpoint, key: str
) -> CloudError:
    name = endpoint.display_name
    said = _server_said(response, key)
    detail = f" It said: {said}" if said else ""
    if status in (401, 403):
        return CloudKeyError(
            f"{name} rejected the API key ({status}).{detail}",
            hint="Check that the key is right and still valid, and store it again.",
            command=f"offline-assistant cloud key {endpoint.name}",
        )
    if status == 429:
        error = CloudRateLimitError(
            f"{name} is limiting requests right now (429).{detail}",
            hint="Wait a moment and ask again, or check the account's usage limits.",
        )
        retry = _retry_after(response.headers.get("retry-after"))
        if retry is not None:
            error.retry_after_s = retry
            error.hint = f"Try again in {retry:.0f} seconds, or check the account's usage limits."
        return error
    if status == 404:
        return CloudURLError(
            f"{name} has no such endpoint or model (404).{detail}",
            hint="Check the base URL (it usually ends in /v1) and the model name.",
        )
    if status >= 500:
        return CloudServerError(
            f"{name} had a problem of its own ({status}).{detail}",
            hint="Try again later; nothing is wrong on this computer.",
        )
    return CloudRequestError(
        f"{name} refused the request ({status}).{detail}",
        hint="Check the model name; a setting like the longest answer may be too large for it.",
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for APIs, and "wait a moment" says enough


def _transport_error(exc: httpx2.HTTPError, endpoint: CloudEndpoint) -> CloudError:
    import httpx2

    name = endpoint.display_name
    host = urlsplit(endpoint.base_url).hostname or endpoint.base_url
    if isinstance(exc, httpx2.TimeoutException):
        return CloudTimeoutError(
            f"{name} did not answer in time.",
            hint="Check the connection and try again; the provider may be busy.",
        )
    if is_tls_failure(exc):
        return CloudTLSError(
            f"A secure connection to {host} could not be made.",
            hint="Check the computer's date and time and any network that intercepts secure "
            "connections; the address must be the provider's own.",
        )
    if isinstance(exc, httpx2.ProxyError):
        return CloudUnreachableError(
            f"The proxy refused the connection to {host}.",
            hint="Check the system's proxy settings.",
        )
    return CloudUnreachableError(
        f"{host} could not be reached.",
        hint="Check the internet connection and the base URL.",
    )


def _stream_error(exc: httpx2.HTTPError, endpoint: CloudEndpoint) -> CloudError:
    import httpx2

    if isinstance(exc, httpx2.TimeoutException):
        return CloudTimeoutError(
            f"{endpoint.display_name} stopped sending its answer.",
            hint="The part received is kept. Ask again to get the whole answer.",
        )
    return CloudStreamError(
        f"The connection to {endpoint.display_name} broke off during the answer.",
        hint="The part received is kept. Ask again to get the whole answer.",
    )
