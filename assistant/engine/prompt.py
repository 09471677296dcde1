"""From chat messages to prompt text, and from generated text back to what the user sees.

A model's GGUF normally carries its own chat template (Jinja). A base model has none: it gets a
plain "User:/Assistant:" transcript and stop strings, with a warning, instead of garbage.
A conversation whose last message is an answer is rendered so the model continues that answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import TemplateError
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from assistant.engine.base import ChatMessage
from assistant.errors import ModelFileError

FALLBACK_WARNING = (
    "This model has no chat template (it is probably a base model, not an instruction-tuned "
    "one). Using a plain transcript format; answers may be poor. An '-Instruct' or '-it' "
    "version of the model will chat much better."
)
# Marks where an answer being continued ends in its rendered template (never typed by anyone).
_CONTINUE_MARK = "\u2063\u2063continue-here\u2063\u2063"
_FALLBACK_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stop: tuple[str, ...]
    has_special_tokens: bool  # the text already holds BOS etc.; do not add them again


class PromptFormat:
    """Renders a conversation with the model's template, or the plain fallback."""

    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        self.uses_fallback = not (template and template.strip())
        self._eos = eos_token
        self._formatter: Jinja2ChatFormatter | None = None
        if not self.uses_fallback:
            assert template is not None
            try:
                self._formatter = Jinja2ChatFormatter(
                    template=template, eos_token=eos_token, bos_token=bos_token
                )
            except TemplateError as exc:
                raise ModelFileError(
                    f"The model's chat template is broken ({exc}).",
                    hint="Pick another file of this model.",
                ) from exc

    def render(self, messages: list[ChatMessage]) -> RenderedPrompt:
        """The prompt for the next answer. A conversation that ends with an answer asks for
        that answer to be continued: the prompt ends inside it, right after its last word."""
        continuing = bool(messages) and messages[-1].role == "assistant"
        if self._formatter is None:
            return self._render_fallback(messages, continuing)
        if continuing:
            # Render the answer with a marker after it and cut the prompt there: whatever the
            # template puts after a finished turn (an end-of-turn token, the next header) goes.
            last = messages[-1]
            marked = [*messages[:-1], ChatMessage("assistant", last.content + _CONTINUE_MARK)]
            result = self._format(marked)
            at = result.text.find(_CONTINUE_MARK)
            if at >= 0:
                return RenderedPrompt(result.text[:at], result.stop, result.has_special_tokens)
        return self._format(messages)

    def _format(self, messages: list[ChatMessage]) -> RenderedPrompt:
        assert self._formatter is not None
        try:
            result = self._formatter(messages=[m.to_dict() for m in messages])  # type: ignore[misc]
        except (TemplateError, ValueError) as exc:
            raise ModelFileError(
                f"The model's chat template rejected this conversation ({exc}).",
                hint="Some models need turns to alternate user/assistant; start a new chat.",
            ) from exc
        stops = tuple(s for s in (result.stop or []) if isinstance(s, str) and s)
        return RenderedPrompt(result.prompt, stops, bool(result.added_special))

    def _render_fallback(self, messages: list[ChatMessage], continuing: bool) -> RenderedPrompt:
        lines = [f"{_FALLBACK_LABELS[m.role]}: {m.content.strip()}" for m in messages]
        if continuing:
            lines[-1] = f"Assistant: {messages[-1].content.lstrip()}"
        text = "\n\n".join(lines) + ("" if continuing else "\n\nAssistant:")
        return RenderedPrompt(text, ("\nUser:", "\nSystem:", "\n\nUser:"), False)


class StopScanner:
    """Streams text while holding back anything that may be the start of a stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Return the text that is safe to show now."""
        if self.stopped:
            return ""
        self._pending += text
        found = [at for at in (self._pending.find(stop) for stop in self._stops) if at != -1]
        if found:  # cut at the earliest stop in the text, whichever stop string it is
            self.stopped = True
            out, self._pending = self._pending[: min(found)], ""
            return out
        keep = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:size]):
                    keep = max(keep, size)
                    break
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def flush(self) -> str:
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
