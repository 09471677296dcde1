"""The model's own thread: loading a model and writing answers, never on the UI thread.

``ModelWorker`` lives on a dedicated ``QThread`` and owns the loaded ``LocalEngine`` (a llama
context is not thread-safe, so exactly one worker ever touches it, one task at a time).
``ModelRunner`` is its face on the UI thread: it queues requests to the worker, turns the worker's
per-token signals into at most one ``textReceived`` per frame, and cancels or shuts it down.

Answers go through ``assistant.conversation``, which saves the question first and the answer as
it streams, so a stop, a crash or a closed window leaves an honest record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from assistant import conversation
from assistant.engine.base import CancelToken, ChatProvider, GenerationSettings
from assistant.errors import NoModelError
from assistant.history import HistoryStore
from assistant.settings import Settings
from assistant.ui.errors import describe

log = logging.getLogger(__name__)

# The UI is updated with streamed text at most this often (one frame at 60 Hz).
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
    ``replace_from`` and every later message (regenerate, edit and resend)."""

    conversation_id: int
    generation: GenerationSettings
    cancel: CancelToken
    question: str | None = None
    replace_from: int | None = None


@dataclass
class _WorkerState:
    closing: threading.Event = field(default_factory=threading.Event)


class ModelWorker(QObject):
    """Owns the engine; runs on the model thread. Slots are reached through queued signals.

    Signals:
        loadStarted(str): model id.
        loaded(str, list): model id and warnings about it (for example a fallback template).
        loadFailed(str, str, str, str): model id, message, hint, traceback ("" if known).
        questionSaved(int, int): conversation id and the id of the saved question.
        answerStarted(int): conversation id.
        chunk(str): text of the answer in progress, as the model writes it.
        answerFinished(int, int): conversation id and id of the saved answer.
        answerFailed(int, str, str, str, bool): conversation id, message, hint, traceback, and
            whether the question of this request was saved.
    """

    loadStarted = Signal(str)
    loaded = Signal(str, list)
    loadFailed = Signal(str, str, str, str)
    questionSaved = Signal(int, int)
    answerStarted = Signal(int)
    chunk = Signal(str)
    answerFinished = Signal(int, int)
    answerFailed = Signal(int, str, str, str, bool)

    def __init__(
        self, history: HistoryStore, engine_factory: EngineFactory, state: _WorkerState
    ) -> None:
        super().__init__()
        self._history = history
        self._factory = engine_factory
        self._state = state
        self._engine: ChatProvider | None = None

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        if self._state.closing.is_set():
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
        try:
            if self._state.closing.is_set():
                return
            if self._engine is None:
                raise NoModelError(
                    "No model is loaded, so there is nobody to answer yet.",
                    hint="Pick a model at the top of the window, or get one with "
                    "\u201cGet models\u2026\u201d.",
                )
            self.answerStarted.emit(conversation_id)
            if request.replace_from is not None:
                self._history.delete_messages_from(conversation_id, request.replace_from)
            if request.question is not None:
                saved = self._history.add_message(conversation_id, "user", request.question)
                saved_question = True
                self.questionSaved.emit(conversation_id, saved.id)
            exchange = conversation.answer(
                self._history,
                self._engine,
                conversation_id,
                request.generation,
                cancel=request.cancel,
                on_chunk=self.chunk.emit,
            )
        except Exception as exc:
            message, hint, details = describe(exc)
            if details:
                log.error("Answering in conversation %s failed:\n%s", conversation_id, details)
            self.answerFailed.emit(conversation_id, message, hint, details, saved_question)
            return
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
        textReceived(int, str): conversation id and new answer text, at most once per frame.
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
        self._state = _WorkerState()
        self._thread = QThread()
        self._thread.setObjectName("model-worker")
        self._worker = ModelWorker(history, engine_factory, self._state)
        self._worker.moveToThread(self._thread)
        self._thread.finished.connect(self._worker.deleteLater)
        self._loadRequested.connect(self._worker.load)
        self._answerRequested.connect(self._worker.answer)
        self._shutdownRequested.connect(self._worker.shutdown)
        self._worker.loadStarted.connect(self._on_load_started)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.loadFailed.connect(self._on_load_failed)
        self._worker.questionSaved.connect(self.questionSaved)
        self._worker.chunk.connect(self._on_chunk)
        self._worker.answerFinished.connect(self._on_answer_finished)
        self._worker.answerFailed.connect(self._on_answer_failed)

        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self._on_flush_due)
        self._pending = ""
        self._cancel: CancelToken | None = None
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

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop the answer, free the model and end the thread; return whether it ended in time.

        The answer in progress is saved as interrupted before the thread ends.
        """
        if not self._thread.isRunning():
            return True
        self._state.closing.set()
        self.stop()
        self._shutdownRequested.emit()
        ended = self._thread.wait(timeout_ms)
        if not ended:
            log.warning("The model thread did not end within %d ms", timeout_ms)
        return bool(ended)

    @Slot()
    def _on_about_to_quit(self) -> None:
        self.shutdown()

    def _submit(self, request: AnswerRequest) -> None:
        if self._answers_queued == 0:
            self.busyChanged.emit(True)
        self._answers_queued += 1
        self._cancel = request.cancel
        self.streaming_conversation = request.conversation_id
        self.streaming_text = ""
        self._pending = ""
        self._answerRequested.emit(request)

    # --- from the worker -------------------------------------------------------------------

    @Slot(str)
    def _on_load_started(self, model_id: str) -> None:
        self.loadStarted.emit(model_id)

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
        self._pending += text
        self.streaming_text += text
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    @Slot()
    def _on_flush_due(self) -> None:
        if self._pending and self.streaming_conversation is not None:
            text, self._pending = self._pending, ""
            self.textReceived.emit(self.streaming_conversation, text)

    def _answer_ended(self) -> None:
        self._flush_timer.stop()
        self._on_flush_due()
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
