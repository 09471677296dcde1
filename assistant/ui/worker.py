"""The model's own thread: loading a model and writing answers, never on the UI thread.

``ModelWorker`` lives on a dedicated ``QThread`` and owns the loaded ``LocalEngine`` (a llama
context is not thread-safe, so exactly one worker ever touches it, one task at a time).
``ModelRunner`` is its face on the UI thread: it queues requests to the worker, passes on the
streamed text (which the worker sends at most once per frame, not once per token), and cancels or
shuts it down.

Answers go through ``assistant.chat.conversation``, which saves the question first and the answer as
it streams, so a stop, a crash or a closed window leaves an honest record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from assistant.chat import conversation
from assistant.engine.base import CancelToken, ChatProvider, GenerationSettings
from assistant.errors import NoModelError
from assistant.chat.history import HistoryStore
from assistant.settings import Settings
from assistant.ui.errors import describe

log = logging.getLogger(__name__)

# Streamed text crosses to the UI thread at most this often (one frame at 60 Hz).
FLUSH_MS = 16

EngineFactory = Callable[[Path, Settings, str], ChatProvider]


def load_local_engine(path: Path, settings: Settings, model_id: str) -> ChatProvider:
    """Load a GGUF with the user's settings (imported here: llama.cpp is slow to import)."""
    from assistant.engine.local import LocalEngine

    return LocalEngine.from_settings(path, settings, model_id=model_id)


@dataclass(frozen=True)
class LoadRequest:
    model_id: str
    path: Path
    settings: Settings


@dataclass(frozen=True)
class AnswerRequest:
    """Answer ``conversation_id``: after saving ``question`` (when given), and after removing
    ``replace_from`` and every later message (regenerate, edit and resend).

    ``question_saved`` is set by the worker once the question is in the history."""

    conversation_id: int
    generation: GenerationSettings
    cancel: CancelToken
    question: str | None = None
    replace_from: int | None = None
    question_saved: threading.Event = field(default_factory=threading.Event, compare=False)


class _Coalescer:
    """Streamed text handed on at most every ``FLUSH_MS``: one queued signal per frame rather
    than one per token. The worker's event loop is busy while it writes, so no timer could
    fire: the text goes out when a token arrives after the interval, and at the end."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._pending: list[str] = []
        self._last = 0.0

    def add(self, text: str) -> None:
        self._pending.append(text)
        now = time.monotonic()
        if now - self._last >= FLUSH_MS / 1000:
            self._last = now
            self.flush()

    def flush(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._emit(text)


class ModelWorker(QObject):
    """Owns the engine; runs on the model thread. Slots are reached through queued signals.

    Signals:
        loadStarted(str): model id.
        loaded(str, list): model id and warnings about it (for example a fallback template).
        loadFailed(str, str, str, str): model id, message, hint, traceback ("" if known).
        questionSaved(int, int): conversation id and the id of the saved question.
        chunk(str): new text of the answer in progress, at most once per frame.
        answerFinished(int, int): conversation id and id of the saved answer.
        answerFailed(int, str, str, str, bool): conversation id, message, hint, traceback, and
            whether the question of this request was saved.
    """

    loadStarted = Signal(str)
    loaded = Signal(str, list)
    loadFailed = Signal(str, str, str, str)
    questionSaved = Signal(int, int)
    chunk = Signal(str)
    answerFinished = Signal(int, int)
    answerFailed = Signal(int, str, str, str, bool)

    def __init__(self, history: HistoryStore, engine_factory: EngineFactory) -> None:
        super().__init__()
        self._history = history
        self._factory = engine_factory
        self._engine: ChatProvider | None = None
        self._closing = threading.Event()
        # Held while a task checks for closing and changes the history, so that once
        # close_gate() returns no new question is saved (the window keeps it as a draft).
        self._gate = threading.Lock()

    def close_gate(self) -> None:
        """Called from the UI thread when the window closes: start no task and save no new
        question from now on. An answer already being written still saves what it wrote."""
        with self._gate:
            self._closing.set()

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        if self._closing.is_set():
            return
        self.loadStarted.emit(request.model_id)
        self._close_engine()
        try:
            engine = self._factory(request.path, request.settings, request.model_id)
        except Exception as exc:  # every failure goes back to the UI, none vanishes here
            message, hint, details = describe(exc)
            if details:
                log.error("Loading %s failed:\n%s", request.path, details)
            self.loadFailed.emit(request.model_id, message, hint, details)
            return
        self._engine = engine
        self.loaded.emit(request.model_id, list(getattr(engine, "warnings", [])))

    @Slot(object)
    def answer(self, request: AnswerRequest) -> None:
        conversation_id = request.conversation_id
        saved_question = False
        text = _Coalescer(self.chunk.emit)
        try:
            if self._closing.is_set():
                return
            if self._engine is None:
                raise NoModelError(
                    "No model is loaded, so there is nobody to answer yet.",
                    hint="Pick a model at the top of the window, or get one with "
                    "\u201cGet models\u2026\u201d.",
                )
            with self._gate:
                if self._closing.is_set():
                    return  # the window closed meanwhile and keeps the question as a draft
                if request.replace_from is not None:
                    self._history.delete_messages_from(conversation_id, request.replace_from)
                if request.question is not None:
                    saved = self._history.add_message(conversation_id, "user", request.question)
                    saved_question = True
                    request.question_saved.set()
                    self.questionSaved.emit(conversation_id, saved.id)
            exchange = conversation.answer(
                self._history,
                self._engine,
                conversation_id,
                request.generation,
                cancel=request.cancel,
                on_chunk=text.add,
            )
        except Exception as exc:
            text.flush()
            message, hint, details = describe(exc)
            if details:
                log.error("Answering in conversation %s failed:\n%s", conversation_id, details)
            self.answerFailed.emit(conversation_id, message, hint, details, saved_question)
            return
        text.flush()
        self.answerFinished.emit(conversation_id, exchange.message.id)

    @Slot()
    def shutdown(self) -> None:
        """Free the model and end the thread (queued after any task in progress)."""
        self._close_engine()
        thread = self.thread()
        if thread is not None:
            thread.quit()

    def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        close = getattr(engine, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # freeing memory must not stop the next load
                log.exception("Closing the previous model failed")


class ModelRunner(QObject):
    """The model worker as seen from the UI thread.

    Signals:
        loadStarted(str): a model started loading (its id).
        loaded(str, list): the model is ready (its id, warnings).
        loadFailed(str, str, str, str): model id, message, hint, traceback ("" if known).
        busyChanged(bool): an answer started (True) or ended (False).
        questionSaved(int, int): conversation id, id of the saved question.
        textReceived(int, str): conversation id and new answer text (at most once per frame:
            the worker coalesces the tokens).
        answerFinished(int, int): conversation id, id of the saved answer (complete or stopped).
        answerFailed(int, str, str, str, bool): conversation id, message, hint, traceback, and
            whether the question was saved.
    """

    loadStarted = Signal(str)
    loaded = Signal(str, list)
    loadFailed = Signal(str, str, str, str)
    busyChanged = Signal(bool)
    questionSaved = Signal(int, int)
    textReceived = Signal(int, str)
    answerFinished = Signal(int, int)
    answerFailed = Signal(int, str, str, str, bool)

    _loadRequested = Signal(object)
    _answerRequested = Signal(object)
    _shutdownRequested = Signal()

    def __init__(
        self,
        history: HistoryStore,
        engine_factory: EngineFactory = load_local_engine,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("model-worker")
        self._worker = ModelWorker(history, engine_factory)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._loadRequested.connect(self._worker.load)
        self._answerRequested.connect(self._worker.answer)
        self._shutdownRequested.connect(self._worker.shutdown)
        self._worker.loadStarted.connect(self.loadStarted)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.loadFailed.connect(self._on_load_failed)
        self._worker.questionSaved.connect(self.questionSaved)
        self._worker.chunk.connect(self._on_chunk)
        self._worker.answerFinished.connect(self._on_answer_finished)
        self._worker.answerFailed.connect(self._on_answer_failed)

        self._cancel: CancelToken | None = None
        self._requests: list[AnswerRequest] = []  # sent to the worker, not ended yet
        self._closing = False
        self._shutdown_sent = False
        self._answers_queued = 0
        self._loads_queued = 0
        self.model_id: str | None = None  # the model loaded (or last asked for)
        self.ready = False
        self.streaming_conversation: int | None = None
        self.streaming_text = ""
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:
            # A thread still running when Qt tears down aborts the process.
            app.aboutToQuit.connect(self._on_about_to_quit)

    # --- state -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """An answer is queued or being written."""
        return self._answers_queued > 0

    @property
    def loading(self) -> bool:
        return self._loads_queued > 0

    # --- requests --------------------------------------------------------------------------

    def load(self, model_id: str, path: Path, settings: Settings) -> None:
        """Load a model in the background; the one loaded before is freed first."""
        self._loads_queued += 1
        self.model_id = model_id
        self.ready = False
        snapshot = Settings(settings.path, settings.as_dict())
        self._loadRequested.emit(LoadRequest(model_id, path, snapshot))

    def ask(self, conversation_id: int, question: str, generation: GenerationSettings) -> None:
        self._submit(AnswerRequest(conversation_id, generation, CancelToken(), question=question))

    def regenerate(
        self, conversation_id: int, answer_id: int, generation: GenerationSettings
    ) -> None:
        """Write the answer ``answer_id`` again (it and anything after it are replaced)."""
        self._submit(
            AnswerRequest(conversation_id, generation, CancelToken(), replace_from=answer_id)
        )

    def edit_and_resend(
        self,
        conversation_id: int,
        question_id: int,
        question: str,
        generation: GenerationSettings,
    ) -> None:
        """Replace the question ``question_id`` (and everything after it) with ``question``."""
        self._submit(
            AnswerRequest(
                conversation_id,
                generation,
                CancelToken(),
                question=question,
                replace_from=question_id,
            )
        )

    def stop(self) -> None:
        """Stop the answer in progress at the next token; its text so far is kept."""
        if self._cancel is not None:
            self._cancel.cancel()

    def begin_shutdown(self) -> list[str]:
        """Stop the answer in progress and let the worker start nothing new; returns at once.

        Returns the questions the worker never saved (asked while a model was still loading),
        for the window to keep as a draft; from now on the worker will not save them. The
        answer in progress is saved as interrupted. Only the first call returns questions.
        """
        if self._closing:
            return []
        self._closing = True
        self._worker.close_gate()
        self.stop()
        unsent = [
            r.question
            for r in self._requests
            if r.question is not None and not r.question_saved.is_set()
        ]
        self._requests.clear()
        return unsent

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop the answer, free the model and end the thread; return whether it ended.

        Waits up to ``timeout_ms`` for the worker to save the answer in progress (as
        interrupted). A second call does not wait again: it says whether the thread has ended.
        """
        if self._shutdown_sent or not self._thread.isRunning():
            return not self._thread.isRunning()
        self._shutdown_sent = True
        self.begin_shutdown()
        self._shutdownRequested.emit()
        if not self._thread.wait(timeout_ms):
            log.warning("The model thread did not end within %d ms", timeout_ms)
        return not self._thread.isRunning()

    @Slot()
    def _on_about_to_quit(self) -> None:
        self.shutdown()

    def _submit(self, request: AnswerRequest) -> None:
        if self._answers_queued == 0:
            self.busyChanged.emit(True)
        self._answers_queued += 1
        self._cancel = request.cancel
        self._requests.append(request)
        self.streaming_conversation = request.conversation_id
        self.streaming_text = ""
        self._answerRequested.emit(request)

    # --- from the worker -------------------------------------------------------------------

    @Slot(str, list)
    def _on_loaded(self, model_id: str, warnings: list[Any]) -> None:
        self._loads_queued -= 1
        if self._loads_queued == 0:
            self.ready = True
        self.loaded.emit(model_id, [str(w) for w in warnings])

    @Slot(str, str, str, str)
    def _on_load_failed(self, model_id: str, message: str, hint: str, details: str) -> None:
        self._loads_queued -= 1
        self.ready = False
        if self._loads_queued == 0:
            self.model_id = None  # the previous model was freed before this load was tried
        self.loadFailed.emit(model_id, message, hint, details)

    @Slot(str)
    def _on_chunk(self, text: str) -> None:
        self.streaming_text += text
        if self.streaming_conversation is not None:
            self.textReceived.emit(self.streaming_conversation, text)

    def _answer_ended(self) -> None:
        if self._requests:
            self._requests.pop(0)  # the worker ends requests in the order they were sent
        self._answers_queued -= 1
        if self._answers_queued == 0:
            self._cancel = None
            self.streaming_conversation = None
            self.streaming_text = ""
            self.busyChanged.emit(False)

    @Slot(int, int)
    def _on_answer_finished(self, conversation_id: int, message_id: int) -> None:
        self._answer_ended()
        self.answerFinished.emit(conversation_id, message_id)

    @Slot(int, str, str, str, bool)
    def _on_answer_failed(
        self, conversation_id: int, message: str, hint: str, details: str, saved: bool
    ) -> None:
        self._answer_ended()
        self.answerFailed.emit(conversation_id, message, hint, details, saved)
