"""One exchange of a saved conversation: history in, answer streamed out, everything saved.

Shared by the CLI and the GUI worker. The question is saved before the model starts, and the
answer row is created as ``interrupted`` and completed at the end, so a process killed
mid-answer leaves an honest record instead of nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from assistant.chat.history import HistoryStore, Message
from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    ChatProvider,
    GenerationSettings,
    GenerationStats,
)
from assistant.errors import ConversationBusyError, EmptyQuestionError, HistoryError

# How often a long answer in progress is written to the database.
SAVE_EVERY_S = 1.0
# How long a second question into the same conversation waits for the first one's answer.
TURN_WAIT_S = 600.0


def check_question(question: str) -> str:
    """``question``, or ``EmptyQuestionError`` when it holds no text (only whitespace)."""
    if not question.strip():
        raise EmptyQuestionError("The question is empty.", hint="Type a question, then send it.")
    return question


@contextlib.contextmanager
def turn(
    history: HistoryStore,
    conversation_id: int,
    *,
    wait_s: float = TURN_WAIT_S,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the conversation's turn while one question is saved and answered, so that two
    processes asking into the same conversation at once keep each question next to its answer
    (question, answer, question, answer), one after the other.

    The lock is a file beside the history (``locks/conversation-N.lock``); it is freed by the
    OS if the process dies. ``on_wait`` is called once if the turn is not free at once.
    ``ConversationBusyError`` if it stays taken for ``wait_s`` seconds."""
    from filelock import FileLock, Timeout

    folder = history.db_path.parent / "locks"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(str(folder / f"conversation-{int(conversation_id)}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise ConversationBusyError(
                f"Conversation {conversation_id} is busy: another question in it is still "
                "being answered.",
                hint="Wait for that answer, or ask in another conversation.",
            ) from None
    try:
        yield
    finally:
        lock.release()


@dataclass
class Exchange:
    """The outcome of one answer."""

    message: Message
    stats: GenerationStats
    dropped: list[ChatMessage]

    @property
    def text(self) -> str:
        return self.message.text


def context_for(history: HistoryStore, conversation_id: int) -> list[ChatMessage]:
    """The messages the model should see: the system prompt, then every saved turn that has
    text (interrupted answers included, failed ones left out)."""
    conversation = history.get_conversation(conversation_id)
    messages: list[ChatMessage] = []
    if conversation.system_prompt:
        messages.append(ChatMessage("system", conversation.system_prompt))
    for saved in history.messages(conversation_id):
        if saved.role == "system" or saved.status == "error" or not saved.text:
            continue
        messages.append(ChatMessage(saved.role, saved.text))  # type: ignore[arg-type]
    return messages


def answer(
    history: HistoryStore,
    provider: ChatProvider,
    conversation_id: int,
    settings: GenerationSettings,
    *,
    cancel: CancelToken | None = None,
    on_chunk: Callable[[str], None] | None = None,
    on_dropped: Callable[[list[ChatMessage]], None] | None = None,
    messages: list[ChatMessage] | None = None,
    extend: int | None = None,
    cancel_reason: Callable[[], str] | None = None,
) -> Exchange:
    """Answer the conversation's last user message and save the answer.

    ``messages`` is exactly what the provider is sent; by default :func:`context_for` builds it
    from the history. Passing it lets a step sit between "what would be sent" and sending it
    (a consent preview, a redaction, only the latest question).

    ``extend`` is the id of an answer cut short (at the length limit, or stopped) to continue:
    the conversation is sent ending with that answer, so the model goes on from its last word
    (see ``engine.prompt``), and the new text is added to the same saved message.

    A cancel (or Ctrl-C) keeps the partial text, marked ``interrupted``, with
    ``stats["stop_reason"]`` from ``cancel_reason()`` when given (say, ``"app_closed"``); a
    failure marks the answer ``error``, keeps why in ``stats["error"]`` and re-raises.
    """
    if messages is None:
        messages = context_for(history, conversation_id)
    base: Message | None = None
    if extend is not None:
        base = next((m for m in history.messages(conversation_id) if m.id == extend), None)
        if base is None or base.role != "assistant":
            raise HistoryError(f"Message {extend} is not an answer of this conversation.")
        if not messages or messages[-1] != ChatMessage("assistant", base.text):
            raise HistoryError("Only the last answer of a conversation can be continued.")
    generation = provider.stream_chat(messages, settings, cancel)
    if generation.dropped and on_dropped is not None:
        on_dropped(generation.dropped)
    if base is None:
        saved = history.add_message(
            conversation_id,
            "assistant",
            "",
            model=provider.model_name,
            provider=provider.provider_name,
            status="interrupted",
        )
        before = ""
    else:
        saved = history.update_message(base.id, status="interrupted")
        before = base.text
    last_save = time.monotonic()
    status = "error"
    error = ""
    try:
        for chunk in generation:
            if on_chunk is not None:
                on_chunk(chunk)
            if time.monotonic() - last_save > SAVE_EVERY_S:
                history.update_message(saved.id, text=before + generation.text)
                last_save = time.monotonic()
        cancelled = generation.stats is not None and generation.stats.stop_reason == "cancelled"
        status = "interrupted" if cancelled else "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as exc:
        error = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        raise
    finally:
        generation.close()  # a Ctrl-C in on_chunk leaves the model's generator suspended
        stats = generation.stats or GenerationStats()
        record = _merged_stats(base, stats)
        if status == "interrupted" and stats.stop_reason == "cancelled" and cancel_reason:
            record["stop_reason"] = cancel_reason()
        if error:
            record["error"] = error
        if status == "error" and base is not None:
            # A continuation that failed keeps the answer it was continuing.
            if not generation.text:
                record, status = base.stats, base.status
            else:
                status = "interrupted"
        message = history.update_message(
            saved.id, text=before + generation.text, status=status, stats=record
        )
    return Exchange(message, stats, generation.dropped)


def _merged_stats(base: Message | None, stats: GenerationStats) -> dict[str, Any]:
    """The stats to save: this answer's, plus the tokens and time of the part it continues."""
    record = stats.to_dict()
    if base is None:
        return record
    earlier = base.stats
    for key in ("completion_tokens", "total_s"):
        value = earlier.get(key)
        if isinstance(value, (int, float)):
            record[key] = record[key] + value
    record["continued"] = int(earlier.get("continued") or 0) + 1
    return record


def ask(
    history: HistoryStore,
    provider: ChatProvider,
    conversation_id: int,
    question: str,
    settings: GenerationSettings,
    *,
    cancel: CancelToken | None = None,
    on_chunk: Callable[[str], None] | None = None,
    on_dropped: Callable[[list[ChatMessage]], None] | None = None,
) -> Exchange:
    """Save ``question`` as the next user message, then answer it. An empty question is
    refused (``EmptyQuestionError``) before anything is saved."""
    check_question(question)
    history.add_message(conversation_id, "user", question)
    return answer(
        history,
        provider,
        conversation_id,
        settings,
        cancel=cancel,
        on_chunk=on_chunk,
        on_dropped=on_dropped,
    )
