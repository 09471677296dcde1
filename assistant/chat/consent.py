"""The consent rules of cloud answers: who may send what, and exactly what is sent.

Nothing here sends anything. It decides whether a cloud request may go (the global switch and
the conversation's mode), builds the exact message list a preview shows and the provider then
receives (the whole conversation or only the latest question, with personal details redacted
if the user asks), and, as a hint only, suggests asking a cloud model when the local answer
looks out of its depth.

Modes of a conversation:

- ``local`` (the default): nothing leaves the computer;
- ``ask``: each cloud request is previewed and needs the user's yes;
- ``allowed``: the user's "ask the cloud" action sends without a preview, to the provider
  named for the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.engine.base import ChatMessage, GenerationStats

Mode = Literal["local", "ask", "allowed"]
MODES: tuple[Mode, ...] = ("local", "ask", "allowed")
MODE_LABELS: dict[Mode, str] = {
    "local": "Local only",
    "ask": "Cloud: ask each time",
    "allowed": "Cloud allowed",
}

Decision = Literal["blocked", "preview", "send"]


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str = ""


def decide(
    cloud_enabled: bool,
    mode: Mode,
    provider: str | None = None,
    allowed_provider: str | None = None,
) -> Verdict:
    """May a cloud request the user just asked for go, and must it be previewed first?

    ``provider`` is the one asked; in ``allowed`` mode only ``allowed_provider`` (the one the
    mode was granted for) skips the preview."""
    if not cloud_enabled:
        return Verdict("blocked", "Cloud models are switched off.")
    if mode == "local":
        return Verdict("blocked", "This conversation is Local only.")
    if mode == "allowed" and (allowed_provider is None or provider == allowed_provider):
        return Verdict("send")
    return Verdict("preview")


def status_text(cloud_enabled: bool, mode: Mode, provider_label: str = "") -> str:
    """What the chat shows, always: can anything leave the machine from here?"""
    if not cloud_enabled or mode == "local":
        return "Local only"
    if mode == "allowed":
        return f"Cloud allowed: {provider_label}" if provider_label else "Cloud allowed"
    return "Cloud: ask each time"


# --- what is sent --------------------------------------------------------------------------------

_REDACTIONS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("email", "[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        "key",
        "[key]",
        re.compile(
            r"\b(?:sk-(?:ant-)?[\w-]{12,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}"
            r"|AKIA[0-9A-Z]{16}|xox[abprs]-[\w-]{10,}|AIza[\w-]{30,})"
            # A long run of letters and digits mixing both: a token or a hash-like secret.
            r"|\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b"
        ),
    ),
    (
        "path",
        "[path]",
        re.compile(
            r"(?:(?<![\w/])~?/(?:home|Users|root|etc|var|tmp|opt|mnt|srv|media)(?:/[^\s'\"<>|]+)+"
            r"|\b[A-Za-z]:\\(?:[^\s\\'\"<>|]+\\?)+|~/[^\s'\"<>|]+)"
        ),
    ),
    (
        "phone",
        "[phone]",
        re.compile(r"(?<![\w+])\+?\d[\d ()./-]{6,}\d(?!\w)"),
    ),
)


@dataclass
class Redaction:
    """Text with personal details replaced, and how many of each kind were found."""

    text: str
    found: dict[str, int] = field(default_factory=dict)


def redact(text: str) -> Redaction:
    """Replace e-mail addresses, API-key-like strings, file paths and phone numbers."""
    found: dict[str, int] = {}
    for kind, placeholder, pattern in _REDACTIONS:
        text, count = pattern.subn(placeholder, text) if kind != "phone" else _phones(text)
        if count:
            found[kind] = found.get(kind, 0) + count
    return Redaction(text, found)


def _phones(text: str) -> tuple[str, int]:
    """Phone numbers: 8 to 15 digits in a run of digits and separators (not a date, a year or
    a short number)."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        digits = sum(ch.isdigit() for ch in match.group())
        if 8 <= digits <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", match.group()):
            count += 1
            return "[phone]"
        return match.group()

    return _REDACTIONS[3][2].sub(replace, text), count


@dataclass
class Preview:
    """Exactly what would be sent, and what was left out or redacted to get there."""

    messages: list[ChatMessage]
    left_out: int = 0
    redacted: dict[str, int] = field(default_factory=dict)

    @property
    def characters(self) -> int:
        return sum(len(m.content) for m in self.messages)


def build_preview(
    context: list[ChatMessage], *, latest_only: bool = False, redact_details: bool = False
) -> Preview:
    """The messages to send, from ``context`` (the conversation up to and including the
    question to ask about): all of it, or the system prompt and the latest question only;
    redacted or not."""
    chosen = list(context)
    if latest_only:
        system = [m for m in context if m.role == "system"]
        last_user = [m for m in context if m.role == "user"][-1:]
        chosen = system + last_user
    left_out = len(context) - len(chosen)
    found: dict[str, int] = {}
    if redact_details:
        cleaned = []
        for message in chosen:
            result = redact(message.content)
            for kind, count in result.found.items():
                found[kind] = found.get(kind, 0) + count
            cleaned.append(ChatMessage(message.role, result.text))
        chosen = cleaned
    return Preview(chosen, left_out, found)


def context_until_question(
    context: list[ChatMessage], question_index: int | None = None
) -> list[ChatMessage]:
    """The context up to and including a user question (by default the last one): what a
    cloud model should see to answer it, without the local answer that followed."""
    users = [i for i, m in enumerate(context) if m.role == "user"]
    if not users:
        return list(context)
    end = users[-1] if question_index is None else question_index
    return list(context[: end + 1])


# --- the advisor -------------------------------------------------------------------------------

_RECENT = re.compile(
    r"\b(latest|today|this (?:week|month|year)|current(?:ly)?|news|recent(?:ly)?|"
    r"right now|price of|stock|weather|20[2-9]\d)\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(prove|proof|derive|step[- ]by[- ]step|optimi[sz]e|algorithm|complexity|"
    r"calculate|solve|why does|compare .+ and|trade-?offs?|design|refactor|debug)\b",
    re.IGNORECASE,
)
_UNSURE = re.compile(
    r"\b(i(?:'m| am) not sure|i don't know|i do not know|i cannot|i can't|as an ai|"
    r"i don't have (?:access|information)|my knowledge cut-?off)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Advice:
    """A hint to ask a cloud model, and why. Never a reason to send anything by itself."""

    reason: str


def advise(
    question: str,
    answer: str,
    stats: GenerationStats | dict[str, Any] | None = None,
    *,
    context_size: int = 0,
    mean_logprob: float | None = None,
) -> Advice | None:
    """Whether the small model looks out of its depth for this question, and why.

    The signs: the question needs recent or broad world knowledge, or deep multi-step
    reasoning; the conversation outgrew the local context window; the answer says it does not
    know, is cut off, or repeats itself; its tokens were unlikely on average (when known)."""
    values = stats.to_dict() if isinstance(stats, GenerationStats) else dict(stats or {})
    dropped = int(values.get("dropped_messages") or 0)
    prompt_tokens = int(values.get("prompt_tokens") or 0)
    if dropped or (context_size and prompt_tokens > 0.9 * context_size):
        return Advice("The conversation is longer than the local model can see at once.")
    if mean_logprob is not None and mean_logprob < -1.5:
        return Advice("The local model was unsure of its own words (low token confidence).")
    if _UNSURE.search(answer):
        return Advice("The local model says it does not know.")
    if values.get("stop_reason") == "length":
        return Advice("The local answer was cut off at its length limit.")
    if _repetitive(answer):
        return Advice("The local answer repeats itself.")
    if _RECENT.search(question):
        return Advice("The question needs recent or broad world knowledge.")
    if _REASONING.search(question) or len(question) > 1200:
        return Advice("The question needs deep, multi-step reasoning.")
    return None


def _repetitive(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    return len(lines) >= 4 and len(set(lines)) <= len(lines) // 2
