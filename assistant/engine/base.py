"""The provider interface every front end uses, whatever runs the model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]
StopReason = Literal["stop", "length", "cancelled", "error"]
OverflowPolicy = Literal["drop_oldest", "refuse"]
OVERFLOW_POLICIES: tuple[OverflowPolicy, ...] = ("drop_oldest", "refuse")
SAMPLING_FIELDS: tuple[str, ...] = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")
"""The sampling values a model's authors may recommend (and a GGUF file may carry)."""


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class SamplingPreset:
    """A model's recommended sampling; None where the recommendation says nothing.

    ``source`` says where the values come from, in words a settings dialog can show ("the
    Qwen3 model card", "the model file")."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    source: str = ""

    def values(self) -> dict[str, float | int]:
        """The fields that carry a value, by name."""
        found = {name: getattr(self, name) for name in SAMPLING_FIELDS}
        return {name: value for name, value in found.items() if value is not None}

    def __bool__(self) -> bool:
        return bool(self.values())


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling and length settings for one answer. ``temperature == 0`` means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int | None = None
    overflow: OverflowPolicy = "drop_oldest"
    stop: tuple[str, ...] = ()
    """Extra stop strings for this answer (the local API's ``stop``): it ends before the first
    one, which is not part of the text. Not a user setting."""
    follow_model: frozenset[str] = frozenset()
    """Sampling fields the user left to the model: where the loaded model recommends a value for
    one of them, that value replaces the one here (:meth:`merged`). Empty: every value here is
    meant as it is."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["follow_model"] = sorted(self.follow_model)  # JSON has no sets
        return data

    def merged(self, preset: SamplingPreset | None) -> GenerationSettings:
        """These settings with the model's recommendation in the fields left to it."""
        if not preset or not self.follow_model:
            return self
        recommended = preset.values()
        changes: dict[str, Any] = {
            name: value for name, value in recommended.items() if name in self.follow_model
        }
        return replace(self, **changes) if changes else self

    def override(self, **changes: Any) -> GenerationSettings:
        """These settings with ``changes`` (a request's or a command line's own values), which
        the model's recommendation no longer replaces."""
        return replace(self, follow_model=self.follow_model - set(changes), **changes)


@dataclass
class GenerationStats:
    """What one answer cost. ``evaluated_prompt_tokens`` counts only the prompt tokens the engine
    really had to process (the rest came from its cache)."""

    model: str = ""
    provider: str = ""
    prompt_tokens: int = 0
    evaluated_prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    total_s: float = 0.0
    tokens_per_s: float | None = None
    stop_reason: StopReason = "stop"
    dropped_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CancelToken:
    """Thread-safe flag a front end sets to stop an answer at the next token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Generation:
    """One answer in progress: iterate it for text chunks.

    ``dropped`` lists the messages left out to fit the context (known before the first chunk);
    ``stats`` is set once iteration ends, also after a cancel. ``text`` is what was produced so far.
    """

    _chunks: Iterator[str]
    dropped: list[ChatMessage] = field(default_factory=list)
    stats: GenerationStats | None = None
    text: str = ""

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            self.text += chunk
            yield chunk

    def close(self) -> None:
        """Stop early: the provider finishes its statistics and frees the model at once, rather
        than whenever the garbage collector gets to an abandoned generator."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def run(self, on_chunk: Callable[[str], None] | None = None) -> str:
        """Consume the whole answer, passing each chunk to ``on_chunk``; return the full text."""
        for chunk in self:
            if on_chunk is not None:
                on_chunk(chunk)
        return self.text


ProviderKind = Literal["local", "remote"]

LoadProgress = Callable[[float], bool]
"""Told how far a model load is (0.0 to 1.0, increasing, at most ~10 times a second, 1.0 last);
returning ``False`` cancels the load (the loader then raises ``assistant.errors.Cancelled``)."""


def load_percent(fraction: float) -> int:
    """A load's progress as a whole percentage for people: 100 only once it is complete."""
    return 100 if fraction >= 1.0 else max(0, min(99, round(fraction * 100)))


class ChatProvider(Protocol):
    """Anything that can answer a conversation: the local engine, a cloud API.

    A provider describes itself, so front ends ask rather than probe: ``kind`` says where it
    runs (``local`` on this computer's model thread, ``remote`` over the network on a thread of
    its own), ``needs_key`` and ``needs_network`` what it depends on, ``warnings`` what the user
    should know about the loaded model. ``close()`` frees what it holds (a model's memory, a
    connection pool) and is safe to call twice.
    """

    @property
    def provider_name(self) -> str:  # "local", "openai", ...
        ...

    @property
    def model_name(self) -> str: ...

    @property
    def kind(self) -> ProviderKind: ...

    @property
    def needs_key(self) -> bool: ...

    @property
    def needs_network(self) -> bool: ...

    @property
    def warnings(self) -> list[str]: ...

    def stream_chat(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Start an answer. Raises ``ContextOverflowError`` at once under the ``refuse`` policy."""
        ...

    def close(self) -> None: ...
