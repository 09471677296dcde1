"""OpenAI's chat-completions shapes: requests checked into a ``ChatJob``, answers out.

Only what the local engine can honour is accepted: one choice, text messages, the sampling
fields it has (``temperature``, ``top_p``, plus llama.cpp's ``top_k``, ``min_p`` and
``repeat_penalty``), ``max_tokens``, ``seed`` and ``stop``. Fields that change nothing here
(``frequency_penalty``, ``user``, ``logit_bias``...) are accepted and ignored, as other
local servers do; fields that would change the answer's meaning (tools, images, ``n`` > 1, JSON
mode) are refused with a 400 that says so, rather than silently answered differently.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from assistant.engine.base import ChatMessage, GenerationSettings, GenerationStats, Role
from assistant.errors import (
    AssistantError,
    ContextOverflowError,
    InsufficientMemoryError,
    ModelFileError,
    ModelNotFoundError,
    NoModelError,
)

log = logging.getLogger(__name__)

MAX_STOP_STRINGS = 4  # as OpenAI
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system role
    "user": "user",
    "assistant": "assistant",
}
_REFUSED_FIELDS = {
    "tools": "Tools (function calling) are not supported by the local model.",
    "functions": "Function calling is not supported by the local model.",
    "audio": "Audio is not supported by the local model.",
    "logprobs": "Log probabilities are not available from the local API.",
}
_FINISH_REASONS = {"stop": "stop", "length": "length", "cancelled": "stop"}


class ApiError(Exception):
    """A request the API answers with an error in OpenAI's shape (and an HTTP status)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def unknown_model(model_id: str, known: list[str]) -> ApiError:
    listed = ", ".join(known) if known else "none is installed"
    return ApiError(
        404,
        f"The model {model_id!r} is not installed here. Installed models: {listed}.",
        param="model",
        code="model_not_found",
    )


def queue_full(limit: int) -> ApiError:
    return ApiError(
        429,
        f"{limit} requests are already waiting for the model; try again when one is answered.",
        kind="rate_limit_error",
        code="queue_full",
        retry_after_s=1,
    )


def model_loading(model_id: str | None) -> ApiError:
    what = f"The model {model_id}" if model_id else "A model"
    return ApiError(
        503,
        f"{what} is loading; try again in a few seconds.",
        kind="server_error",
        code="model_loading",
        retry_after_s=2,
    )


def api_error_for(exc: BaseException) -> ApiError:
    """The error a client is shown for a failure while answering (a bug is logged)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, exc.full_text(), param="messages", code="context_length_exceeded")
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, exc.full_text(), param="model", code="model_not_found")
    if isinstance(exc, NoModelError | InsufficientMemoryError | ModelFileError):
        return ApiError(503, exc.full_text(), kind="server_error", code="model_unavailable")
    if isinstance(exc, AssistantError):
        return ApiError(500, exc.full_text(), kind="server_error")
    log.error("The local API failed on a request", exc_info=exc)
    return ApiError(
        500,
        "Something went wrong in Offline Assistant (a bug); the details are in its log.",
        kind="server_error",
    )


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatJob:
    """One chat completion to answer: the model asked for (``None``: the one loaded, else the
    default), exactly the messages to send and how to sample."""

    model: str | None
    messages: tuple[ChatMessage, ...]
    generation: GenerationSettings
    stream: bool = False
    include_usage: bool = False


def parse_chat_request(body: Any, defaults: GenerationSettings) -> ChatJob:
    """Check a ``/v1/chat/completions`` body; fields not given keep ``defaults`` (the user's
    settings). Raises ``ApiError`` (400) naming the field at fault."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    for name, reason in _REFUSED_FIELDS.items():
        if body.get(name):
            raise bad_request(reason, name)
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise bad_request("Only plain text answers are supported.", "response_format")
    if body.get("n", 1) != 1:
        raise bad_request("Only one choice (n = 1) is supported.", "n")
    model = body.get("model")
    if model is not None and (not isinstance(model, str)):
        raise bad_request("'model' must be a model id (text).", "model")
    stream = _optional(body, "stream", bool, False)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", "stream_options")
    include_usage = bool(options.get("include_usage", False))

    changes: dict[str, Any] = {"overflow": "refuse"}  # a client manages its own context
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0), ("min_p", 0.0, 1.0)):
        value = _number(body, name, low, high)
        if value is not None:
            changes[name] = value
    penalty = _number(body, "repeat_penalty", 0.0, 10.0)
    if penalty is not None:
        changes["repeat_penalty"] = penalty
    top_k = _whole(body, "top_k", 0, 100_000)
    if top_k is not None:
        changes["top_k"] = top_k
    max_tokens = _whole(body, "max_completion_tokens", 1, 1_000_000)
    if max_tokens is None:
        max_tokens = _whole(body, "max_tokens", 1, 1_000_000)
    if max_tokens is not None:
        changes["max_tokens"] = max_tokens
    if "seed" in body and body["seed"] is not None:
        changes["seed"] = _whole(body, "seed", -(2**63), 2**63 - 1)
    changes["stop"] = _stops(body.get("stop"))
    return ChatJob(
        model=model or None,
        messages=_messages(body.get("messages")),
        generation=defaults.override(**changes),
        stream=stream,
        include_usage=include_usage,
    )


def _optional(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise bad_request(f"'{name}' must be {kind.__name__}.", name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a number from {low:g} to {high:g}.", name)
    return float(value)


def _whole(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"'{name}' must be a whole number from {low} to {high}.", name)
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_STRINGS
        or not all(isinstance(s, str) for s in stops)
    ):
        raise bad_request(f"'stop' must be text or a list of up to {MAX_STOP_STRINGS}.", "stop")
    return tuple(s for s in stops if s)


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise bad_request("'messages' must be a list of at least one message.", "messages")
    messages = []
    for index, item in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object.", where)
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise bad_request(
                f"{where}.role must be system, developer, user or assistant.", f"{where}.role"
            )
        messages.append(ChatMessage(role, _content(item.get("content"), where)))
    return tuple(messages)


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts (images are refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request(
                    f"{where}.content may hold only text parts; this model reads no images.",
                    f"{where}.content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{where}.content: a text part needs 'text'.", where)
            texts.append(text)
        return "".join(texts)
    raise bad_request(f"{where}.content must be text.", f"{where}.content")


# --- responses -------------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def usage(stats: GenerationStats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    }


def finish_reason(stats: GenerationStats) -> str:
    return _FINISH_REASONS.get(stats.stop_reason, "stop")


def completion(
    ident: str, created: int, model: str, text: str, stats: GenerationStats
) -> dict[str, Any]:
    """A whole (not streamed) answer."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason(stats),
            }
        ],
        "usage": usage(stats),
    }


def chunk(
    ident: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One streamed chunk; ``with_usage`` adds ``"usage": null`` as OpenAI does on every
    chunk before the last when the client asked for usage."""
    body: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        body["usage"] = None
    return body


def usage_chunk(ident: str, created: int, model: str, stats: GenerationStats) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage(stats),
    }


@dataclass(frozen=True)
class ApiModel:
    """An installed model as ``/v1/models`` lists it."""

    id: str
    created: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "local"}


def now() -> int:
    return int(time.time())
