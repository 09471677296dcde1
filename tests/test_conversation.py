"""One exchange through the conversation service: real engine, real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.chat import conversation
from assistant.chat.history import HistoryStore
from assistant.engine.base import CancelToken, GenerationSettings
from assistant.engine.local import LocalEngine
from assistant.errors import HistoryError
from assistant.paths import app_paths

GREEDY = GenerationSettings(temperature=0.0, max_tokens=48, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Iterator[LocalEngine]:
    loaded = LocalEngine(model_path, n_ctx=1024, n_threads=2)
    yield loaded
    loaded.close()


@pytest.fixture
def history() -> Iterator[HistoryStore]:
    store = HistoryStore(app_paths().history_db)
    yield store
    store.close()


def test_ask_saves_question_and_answer(engine: LocalEngine, history: HistoryStore) -> None:
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")
    chunks: list[str] = []
    exchange = conversation.ask(
        history, engine, chat.id, "What is the capital of France?", GREEDY, on_chunk=chunks.append
    )
    assert "Paris" in exchange.text
    assert "".join(chunks) == exchange.text
    saved = history.messages(chat.id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    assert saved[1].provider == "local"
    assert saved[1].stats["completion_tokens"] == exchange.stats.completion_tokens
    assert history.get_conversation(chat.id).title == "What is the capital of France?"


def test_follow_up_uses_saved_turns(engine: LocalEngine, history: HistoryStore) -> None:
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")
    conversation.ask(history, engine, chat.id, "What is the capital of France?", GREEDY)
    second = conversation.ask(history, engine, chat.id, "And of Germany?", GREEDY)
    assert second.stats.evaluated_prompt_tokens < second.stats.prompt_tokens / 2
    assert len(history.messages(chat.id)) == 4


def test_cancel_keeps_partial_answer_as_interrupted(
    engine: LocalEngine, history: HistoryStore
) -> None:
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")
    cancel = CancelToken()
    seen: list[str] = []

    def stop_after_two(chunk: str) -> None:
        seen.append(chunk)
        if len(seen) == 2:
            cancel.cancel()

    long = GenerationSettings(temperature=0.0, max_tokens=400)
    exchange = conversation.ask(
        history,
        engine,
        chat.id,
        "Write a long poem.",
        long,
        cancel=cancel,
        on_chunk=stop_after_two,
    )
    answer = history.messages(chat.id)[-1]
    assert answer.status == "interrupted"
    assert answer.text == "".join(seen) == exchange.text
    assert exchange.stats.stop_reason == "cancelled"


def test_failed_answers_are_left_out_of_the_context(
    engine: LocalEngine, history: HistoryStore
) -> None:
    chat = history.create_conversation(system_prompt="Be brief.")
    history.add_message(chat.id, "user", "first")
    history.add_message(chat.id, "assistant", "broken", status="error")
    history.add_message(chat.id, "user", "second")
    context = conversation.context_for(history, chat.id)
    assert [m.content for m in context] == ["Be brief.", "first", "second"]


def test_interrupt_in_the_consumer_frees_the_engine(
    engine: LocalEngine, history: HistoryStore
) -> None:
    """Ctrl-C lands in the front end's code between chunks: the answer is kept as interrupted
    and the engine is free for the next question at once."""
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")

    def interrupt(_chunk: str) -> None:
        raise KeyboardInterrupt

    long = GenerationSettings(temperature=0.0, max_tokens=400)
    with pytest.raises(KeyboardInterrupt):
        conversation.ask(history, engine, chat.id, "Tell me a story.", long, on_chunk=interrupt)
    answer = history.messages(chat.id)[-1]
    assert answer.status == "interrupted" and answer.text
    assert answer.stats["stop_reason"] == "cancelled"
    follow_up = conversation.ask(history, engine, chat.id, "What is the capital of France?", GREEDY)
    assert follow_up.stats.stop_reason == "stop"


def test_answer_finishing_after_its_chat_was_deleted_is_kept(
    engine: LocalEngine, history: HistoryStore
) -> None:
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")

    def delete_midway(_chunk: str) -> None:
        if history.list_conversations():
            history.delete_conversation(chat.id)

    exchange = conversation.ask(
        history,
        engine,
        chat.id,
        "What is the capital of France?",
        GREEDY,
        on_chunk=delete_midway,
    )
    assert exchange.message.status == "complete" and "Paris" in exchange.text
    history.restore_conversation(chat.id)
    assert history.messages(chat.id)[-1].text == exchange.text


def test_an_answer_cut_at_the_length_limit_continues_in_place(
    engine: LocalEngine, history: HistoryStore
) -> None:
    chat = history.create_conversation(system_prompt="You are a helpful assistant.")
    short = GenerationSettings(temperature=0.0, max_tokens=12, repeat_penalty=1.0)
    first = conversation.ask(history, engine, chat.id, "Write a story about a dragon.", short)
    assert first.stats.stop_reason == "length"
    assert first.message.outcome == "cut at the length limit" and first.message.can_continue

    more: list[str] = []
    again = conversation.answer(
        history, engine, chat.id, short, extend=first.message.id, on_chunk=more.append
    )
    assert again.message.id == first.message.id  # the same answer, longer
    assert again.message.text == first.text + "".join(more)
    assert len(again.message.text) > len(first.text)
    assert again.message.stats["completion_tokens"] == 24
    assert again.message.stats["continued"] == 1
    # The model went on from its last word: the prompt ended inside the answer, so only the
    # few tokens after the cached ones were evaluated again.
    assert again.stats.evaluated_prompt_tokens < 8
    assert [m.role for m in history.messages(chat.id)] == ["user", "assistant"]


def test_only_the_last_answer_can_be_continued(engine: LocalEngine, history: HistoryStore) -> None:
    chat = history.create_conversation()
    first = conversation.ask(history, engine, chat.id, "Say hi.", GREEDY)
    history.add_message(chat.id, "user", "And again?")
    with pytest.raises(HistoryError):
        conversation.answer(history, engine, chat.id, GREEDY, extend=first.message.id)
    assert history.messages(chat.id)[1].text == first.text


def test_a_cancel_records_why(engine: LocalEngine, history: HistoryStore) -> None:
    chat = history.create_conversation()
    history.add_message(chat.id, "user", "Count to one hundred.")
    cancel = CancelToken()
    cancel.cancel()
    exchange = conversation.answer(
        history, engine, chat.id, GREEDY, cancel=cancel, cancel_reason=lambda: "app_closed"
    )
    assert exchange.message.status == "interrupted"
    assert exchange.message.stats["stop_reason"] == "app_closed"
    assert exchange.message.outcome == "interrupted when the app closed"
