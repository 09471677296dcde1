"""Answers for every front end, each scoped to a request, never on the UI thread.

``ModelRunner`` is the one queue the chat window, the quick-ask popup and the local API share.
Each answer is an ``AnswerRequest`` with an id; every signal about it carries that id, so a front
end follows only its own requests, ``stop(id)`` stops exactly one, and "busy" and "text so far"
belong to a request rather than to the runner.

Requests run on one of two lanes, each a ``ProviderWorker`` on a ``QThread`` of its own:

- the **model lane** owns the one loaded local model (a llama context is not thread-safe, so
  exactly one thread touches it, one request at a time, in the order they were submitted);
- the **remote lane** runs providers that answer over the network, so a cloud answer neither
  unloads the local model nor waits behind it on the model thread.

Answers go through ``assistant.chat.conversation``, which saves the question first and the
answer as it streams, so a stop, a crash or a quit leaves an honest record.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QThread, Signal, Slot

from assistant.chat import conversation
from assistant.chat.history import APP_CLOSED, HistoryStore
from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    ChatProvider,
    GenerationSettings,
    GenerationStats,
)
from assistant.errors import Cancelled, NoModelError
from assistant.providers import LOCAL, ProviderRegistry, reporting_load_progress
from assistant.ui.errors import describe

log = logging.getLogger(__name__)

# Streamed text crosses to the UI thread at most this often (one frame at 60 Hz).
FLUSH_MS = 16

Prepare = Callable[[list[ChatMessage]], list[ChatMessage]]
"""A step between building the messages to send and sending them (runs on the worker)."""

_request_ids = itertools.count(1)


class SettingsSnapshot:
    """The settings a model is opened with, frozen when it was asked for: a worker never reads
    a value the user is changing at that moment."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]


@dataclass(frozen=True)
class LoadRequest:
    model_id: str
    settings: SettingsSnapshot
    provider: str = LOCAL
    cancel: CancelToken = field(default_factory=CancelToken, compare=False)


@dataclass
class AnswerOutcome:
    """What the worker learned about one request, for the front end that asked: set before
    ``answerFinished`` (``stats``) or ``answerFailed`` (``error``) is sent."""

    stats: GenerationStats | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class AnswerRequest:
    """Answer ``conversation_id`` with ``provider``'s ``model`` (``None``: the local model
    loaded now): after removing ``replace_from`` and every later message (regenerate, edit and
    resend), and after saving ``question`` when given.

    ``extend`` is the id of the conversation's last answer, cut short, to continue instead of
    writing a new one: the new text is added to that answer.

    ``prepare`` may change the exact messages sent. ``client`` names the front end that asked
    (for logs). ``question_saved`` is set by the worker once the question is in the history.

    ``messages`` given: send exactly these (after ``prepare``) and neither read nor write the
    history; ``conversation_id`` is then only a label, and ``answerFinished`` carries answer id
    0. The local API's requests use it unless the user keeps them. ``outcome`` tells the
    asker the answer's statistics (token counts) or the exception it failed with."""

    conversation_id: int
    generation: GenerationSettings
    question: str | None = None
    replace_from: int | None = None
    extend: int | None = None
    provider: str = LOCAL
    model: str | None = None
    prepare: Prepare | None = field(default=None, compare=False)
    client: str = ""
    settings: SettingsSnapshot | None = field(default=None, compare=False)
    id: int = field(default_factory=lambda: next(_request_ids))
    cancel: CancelToken = field(default_factory=CancelToken, compare=False)
    question_saved: threading.Event = field(default_factory=threading.Event, compare=False)
    messages: tuple[ChatMessage, ...] | None = None
    outcome: AnswerOutcome = field(default_factory=AnswerOutcome, compare=False)


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


class ProviderWorker(QObject):
    """Opens providers and writes answers on its own thread; slots are reached through queued
    signals. The model lane keeps at most one provider open (the local model); the remote lane
    keeps each remote provider it opened until shutdown.

    Signals:
        loadStarted(str): model id.
        loadProgress(str, float): model id, how far its load is (0.0-1.0, at most 10 a second).
        loaded(str, list): model id and warnings about it (for example a fallback template).
        loadFailed(str, str, str, str): model id, message, hint, traceback ("" if known).
        loadCancelled(str, str): model id, and the model still open on this lane ("" if none).
        answerStarted(int, int): request id, conversation id.
        questionSaved(int, int, int): request id, conversation id, id of the saved question.
        chunk(int, str): request id and new answer text, at most once per frame.
        answerFinished(int, int, int): request id, conversation id, id of the saved answer.
        answerFailed(int, int, str, str, str, bool): request id, conversation id, message,
            hint, traceback, and whether the question of this request was saved.
        answerSkipped(int, int): request id, conversation id: stopped before it started.
    """

    loadStarted = Signal(str)
    loadProgress = Signal(str, float)
    loaded = Signal(str, list)
    loadFailed = Signal(str, str, str, str)
    loadCancelled = Signal(str, str)
    answerStarted = Signal(int, int)
    questionSaved = Signal(int, int, int)
    chunk = Signal(int, str)
    answerFinished = Signal(int, int, int)
    answerFailed = Signal(int, int, str, str, str, bool)
    answerSkipped = Signal(int, int)

    def __init__(self, history: HistoryStore, providers: ProviderRegistry, *, lane: str) -> None:
        super().__init__()
        self._history = history
        self._registry = providers
        self._lane = lane
        self._open: dict[tuple[str, str], ChatProvider] = {}
        self._closing = threading.Event()
        # Held while a task checks for closing and changes the history, so that once
        # close_gate() returns no new question is saved (its front end keeps it as a draft).
        self._gate = threading.Lock()
        self._loading: CancelToken | None = None  # of the load in progress

    def close_gate(self) -> None:
        """Called from the UI thread on quit: start no task and save no new question from now
        on. An answer already being written still saves what it wrote."""
        with self._gate:
            self._closing.set()

    # --- loading ---------------------------------------------------------------------------

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        if self._closing.is_set():
            return
        if request.cancel.cancelled:  # before it started: the model open now stays
            self.loadCancelled.emit(request.model_id, self._open_model_id())
            return
        try:
            self._load(request.provider, request.model_id, request.settings, request.cancel)
        except Exception:
            return  # reported by _load

    def cancel_load(self) -> None:
        """Called from the UI thread: stop the load in progress, if any, at llama.cpp's next
        report (this thread is inside llama.cpp, so no queued signal could reach it)."""
        loading = self._loading
        if loading is not None:
            loading.cancel()

    def _load(
        self, provider: str, model_id: str, settings: SettingsSnapshot, cancel: CancelToken
    ) -> ChatProvider:
        """Open ``provider``'s ``model_id`` as the only model of this lane; failures are
        reported (loadFailed, or loadCancelled when ``cancel`` stopped it) and re-raised."""
        self.loadStarted.emit(model_id)
        self._close_all()  # free the memory of the previous model before loading the next

        def progress(fraction: float) -> bool:
            if cancel.cancelled:
                return False
            self.loadProgress.emit(model_id, fraction)
            return True

        self._loading = cancel
        try:
            with reporting_load_progress(progress):
                opened = self._registry.get(provider).open(model_id, settings)
            if cancel.cancelled:  # after llama.cpp's last report: too late to stop it there
                opened.close()
                raise Cancelled(f"Loading {model_id} was cancelled.")
        except Cancelled:
            self.loadCancelled.emit(model_id, "")
            raise
        except Exception as exc:  # every failure goes back to the UI, none vanishes here
            message, hint, details = describe(exc, f"Loading {model_id}")
            self.loadFailed.emit(model_id, message, hint, details)
            raise
        finally:
            self._loading = None
        self._open[(provider, model_id)] = opened
        self.loaded.emit(model_id, list(opened.warnings))
        return opened

    def _open_model_id(self) -> str:
        return next(iter(self._open), ("", ""))[1]

    def _provider_for(self, request: AnswerRequest) -> ChatProvider:
        if self._lane == "model":
            if request.model is None:
                if not self._open:
                    raise NoModelError(
                        "No model is loaded, so there is nobody to answer yet.",
                        hint="Pick a model, or get one in the model manager.",
                    )
                return next(iter(self._open.values()))
            key = (request.provider, request.model)
            if key in self._open:
                return self._open[key]
            if request.settings is None:
                raise NoModelError(f"Model {request.model} is not loaded.")
            return self._load(request.provider, request.model, request.settings, request.cancel)
        key = (request.provider, request.model or "")
        if key not in self._open:
            settings = request.settings or SettingsSnapshot({})
            self._open[key] = self._registry.get(request.provider).open(key[1], settings)
        return self._open[key]

    # --- answering -------------------------------------------------------------------------

    @Slot(object)
    def answer(self, request: AnswerRequest) -> None:
        rid, conversation_id = request.id, request.conversation_id
        if self._closing.is_set() or request.cancel.cancelled:
            self.answerSkipped.emit(rid, conversation_id)
            return
        self.answerStarted.emit(rid, conversation_id)
        saved_question = False
        text = _Coalescer(lambda chunk: self.chunk.emit(rid, chunk))
        try:
            provider = self._provider_for(request)
            if request.messages is not None:
                stats = _answer_unsaved(provider, request, text.add)
                text.flush()
                request.outcome.stats = stats
                self.answerFinished.emit(rid, conversation_id, 0)
                return
            with self._gate:
                if self._closing.is_set():
                    self.answerSkipped.emit(rid, conversation_id)
                    return  # the app is quitting: its front end keeps the question
                if request.replace_from is not None:
                    self._history.delete_messages_from(conversation_id, request.replace_from)
                if request.question is not None:
                    saved = self._history.add_message(conversation_id, "user", request.question)
                    saved_question = True
                    request.question_saved.set()
                    self.questionSaved.emit(rid, conversation_id, saved.id)
            messages = conversation.context_for(self._history, conversation_id)
            if request.prepare is not None:
                messages = request.prepare(messages)
            exchange = conversation.answer(
                self._history,
                provider,
                conversation_id,
                request.generation,
                cancel=request.cancel,
                on_chunk=text.add,
                messages=messages,
                extend=request.extend,
                cancel_reason=self._cancel_reason,
            )
        except Cancelled:  # its model's load was stopped: the question was not saved yet
            text.flush()
            self.answerSkipped.emit(rid, conversation_id)
            return
        except Exception as exc:
            text.flush()
            message, hint, details = describe(exc, f"Answering in conversation {conversation_id}")
            request.outcome.error = _without_tracebacks(exc)
            self.answerFailed.emit(rid, conversation_id, message, hint, details, saved_question)
            return
        text.flush()
        request.outcome.stats = exchange.stats
        self.answerFinished.emit(rid, conversation_id, exchange.message.id)

    def _cancel_reason(self) -> str:
        """Why an answer was cancelled: the app quitting closes the gate before it cancels."""
        return APP_CLOSED if self._closing.is_set() else "cancelled"

    @Slot()
    def shutdown(self) -> None:
        """Free every provider and end the thread (queued after any task in progress)."""
        self._close_all()
        thread = self.thread()
        if thread is not None:
            thread.quit()

    def _close_all(self) -> None:
        opened, self._open = list(self._open.values()), {}
        for provider in opened:
            try:
                provider.close()
            except Exception:  # freeing memory must not stop the next load
                log.exception("Closing %s failed", provider.model_name)


@dataclass
class _Active:
    """What the runner knows of a request that has not ended."""

    request: AnswerRequest
    lane: str
    text: str = ""
    started: bool = False


class _Lane:
    """A worker and its thread."""

    def __init__(self, name: str, history: HistoryStore, providers: ProviderRegistry) -> None:
        self.thread = QThread()
        self.thread.setObjectName(f"{name}-worker")
        self.worker = ProviderWorker(history, providers, lane=name)
        self.worker.moveToThread(self.thread)
        self.thread.finished.connect(self.worker.deleteLater)


class ModelRunner(QObject):
    """The request queue every front end shares, as seen from the UI thread.

    Signals:
        loadStarted(str): the local model started loading (its id).
        loadProgress(str, float): model id, how far its load is (0.0-1.0, increasing, at most
            10 a second; ``load_fraction`` keeps the last one).
        loaded(str, list): the local model is ready (its id, warnings).
        loadFailed(str, str, str, str): model id, message, hint, traceback ("" if known).
        loadCancelled(str): the load of this model id was cancelled (``cancel_load``); not an
            error. ``model_id`` and ``ready`` then tell the model still loaded, if any.
        busyChanged(bool): some request is queued or running (True), or none is (False).
        answerStarted(int, int): request id, conversation id: the worker took it up.
        questionSaved(int, int, int): request id, conversation id, id of the saved question.
        textReceived(int, int, str): request id, conversation id, new answer text (at most
            once per frame: the worker coalesces the tokens).
        answerFinished(int, int, int): request id, conversation id, id of the saved answer
            (complete or stopped).
        answerFailed(int, int, str, str, str, bool): request id, conversation id, message,
            hint, traceback, and whether the question was saved.
        questionReturned(int, int, str): request id, conversation id and the question of a
            request that never started (stopped while queued, or the app is quitting): it was
            not saved, and the front end that asked keeps it.
        requestEnded(int): the request is over (after any of the three signals above).
    """

    loadStarted = Signal(str)
    loadProgress = Signal(str, float)
    loaded = Signal(str, list)
    loadFailed = Signal(str, str, str, str)
    loadCancelled = Signal(str)
    busyChanged = Signal(bool)
    answerStarted = Signal(int, int)
    questionSaved = Signal(int, int, int)
    textReceived = Signal(int, int, str)
    answerFinished = Signal(int, int, int)
    answerFailed = Signal(int, int, str, str, str, bool)
    questionReturned = Signal(int, int, str)
    requestEnded = Signal(int)

    # Every runner not yet garbage: a test harness (or an embedding app) can end them all.
    _live: ClassVar[weakref.WeakSet[ModelRunner]] = weakref.WeakSet()

    _modelLoadRequested = Signal(object)
    _modelAnswerRequested = Signal(object)
    _remoteAnswerRequested = Signal(object)
    _shutdownRequested = Signal()

    def __init__(
        self,
        history: HistoryStore,
        providers: ProviderRegistry,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.providers = providers
        self._history = history
        self._lanes = {
            "model": _Lane("model", history, providers),
            "remote": _Lane("remote", history, providers),
        }
        model, remote = self._lanes["model"].worker, self._lanes["remote"].worker
        self._modelLoadRequested.connect(model.load)
        self._modelAnswerRequested.connect(model.answer)
        self._remoteAnswerRequested.connect(remote.answer)
        for lane in self._lanes.values():
            self._shutdownRequested.connect(lane.worker.shutdown)
            worker = lane.worker
            worker.answerStarted.connect(self._on_answer_started)
            worker.questionSaved.connect(self._on_question_saved)
            worker.chunk.connect(self._on_chunk)
            worker.answerFinished.connect(self._on_answer_finished)
            worker.answerFailed.connect(self._on_answer_failed)
            worker.answerSkipped.connect(self._on_answer_skipped)
        model.loadStarted.connect(self._on_load_started)
        model.loadProgress.connect(self._on_load_progress)
        model.loaded.connect(self._on_loaded)
        model.loadFailed.connect(self._on_load_failed)
        model.loadCancelled.connect(self._on_load_cancelled)

        self._active: dict[int, _Active] = {}  # submitted and not ended, in submission order
        self._closing = False
        self._shutdown_sent = False
        self._loads_queued = 0
        self._load_tokens: list[CancelToken] = []  # of loads asked for and maybe not ended
        self.load_fraction: float | None = None  # of the load in progress, once reported
        self._settings: SettingsSnapshot | None = None
        self.model_id: str | None = None  # the local model loaded (or last asked for)
        self.ready = False
        for lane in self._lanes.values():
            lane.thread.start()
        ModelRunner._live.add(self)

    @classmethod
    def shutdown_all(cls, timeout_ms: int = 10_000) -> None:
        """Shut down every runner still alive (their models are freed); for a test harness
        that must not leave a loaded model behind when a test forgot to quit its services."""
        for runner in list(cls._live):
            try:
                runner.shutdown(timeout_ms)
            except RuntimeError:  # its C++ side is already gone
                continue

    # --- state -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Some request, of any front end, is queued or being written."""
        return bool(self._active)

    @property
    def loading(self) -> bool:
        return self._loads_queued > 0

    @property
    def model_thread(self) -> QThread:
        """The thread that owns the local model (tests check that nothing else runs there)."""
        return self._lanes["model"].thread

    def is_active(self, request_id: int) -> bool:
        return request_id in self._active

    def text_so_far(self, request_id: int) -> str:
        """The answer text received for a request that has not ended ("" otherwise)."""
        active = self._active.get(request_id)
        return active.text if active is not None else ""

    def request_for(self, conversation_id: int) -> int | None:
        """The request writing in ``conversation_id`` now (or queued for it), if any."""
        for rid, active in self._active.items():
            if active.request.conversation_id == conversation_id:
                return rid
        return None

    # --- requests --------------------------------------------------------------------------

    def load(self, model_id: str, settings: Any, provider: str = LOCAL) -> None:
        """Load ``provider``'s model in the background; the one loaded before is freed first.
        ``settings`` (a mapping-like ``Settings``) is read now, not later."""
        self._loads_queued += 1
        self.model_id = model_id
        self.ready = False
        self._settings = _snapshot(settings)
        request = LoadRequest(model_id, self._settings, provider)
        self._load_tokens.append(request.cancel)
        self._modelLoadRequested.emit(request)

    def cancel_load(self) -> None:
        """Stop loading: the load in progress stops at llama.cpp's next report (a fraction of a
        second) and frees what it read; loads still queued never start. Each ends with
        ``loadCancelled``. Requests waiting for the model then fail as having none."""
        for token in self._load_tokens:
            token.cancel()
        self._load_tokens.clear()
        self._lanes["model"].worker.cancel_load()

    def submit(self, request: AnswerRequest) -> int:
        """Queue ``request`` on its lane; returns its id. Remote providers (and unknown ones,
        which fail there with a clear message) go to the remote lane."""
        remote = (
            request.provider in self.providers and not self.providers.get(request.provider).is_local
        )
        lane = "remote" if remote or request.provider not in self.providers else "model"
        if request.settings is None and self._settings is not None:
            request = _with_settings(request, self._settings)
        if not self._active:
            self.busyChanged.emit(True)
        self._active[request.id] = _Active(request, lane, text=self._continued_text(request))
        if self._closing:
            self._return(request.id)
            return request.id
        if lane == "model":
            self._modelAnswerRequested.emit(request)
        else:
            self._remoteAnswerRequested.emit(request)
        return request.id

    def ask(
        self,
        conversation_id: int,
        question: str,
        generation: GenerationSettings,
        **options: Any,
    ) -> int:
        """Save ``question`` in ``conversation_id`` and answer it; ``options`` are the other
        fields of ``AnswerRequest`` (provider, model, prepare, client)."""
        return self.submit(AnswerRequest(conversation_id, generation, question, **options))

    def regenerate(
        self, conversation_id: int, answer_id: int, generation: GenerationSettings, **options: Any
    ) -> int:
        """Write the answer ``answer_id`` again (it and anything after it are replaced)."""
        return self.submit(
            AnswerRequest(conversation_id, generation, replace_from=answer_id, **options)
        )

    def edit_and_resend(
        self,
        conversation_id: int,
        question_id: int,
        question: str,
        generation: GenerationSettings,
        **options: Any,
    ) -> int:
        """Replace the question ``question_id`` (and everything after it) with ``question``."""
        return self.submit(
            AnswerRequest(
                conversation_id, generation, question, replace_from=question_id, **options
            )
        )

    def continue_answer(
        self, conversation_id: int, answer_id: int, generation: GenerationSettings, **options: Any
    ) -> int:
        """Continue the answer ``answer_id`` (the conversation's last, cut at the length limit
        or stopped) from its last word; the new text is added to it. ``text_so_far`` and
        ``textReceived`` then cover the whole answer and the new text respectively."""
        return self.submit(AnswerRequest(conversation_id, generation, extend=answer_id, **options))

    def _continued_text(self, request: AnswerRequest) -> str:
        if request.extend is None:
            return ""
        try:
            messages = self._history.messages(request.conversation_id)
        except Exception:  # deleted meanwhile: the worker reports it
            return ""
        return next((m.text for m in messages if m.id == request.extend), "")

    def stop(self, request_id: int | None) -> None:
        """Stop one request: at the next token if it is being written (its text so far is
        kept), or before it starts if it is queued. Other requests go on."""
        active = self._active.get(request_id) if request_id is not None else None
        if active is not None:
            active.request.cancel.cancel()

    def begin_shutdown(self) -> list[str]:
        """Stop every request and let the workers start nothing new; returns at once.

        Requests that never started go back to their front ends (``questionReturned``, and the
        list returned here); from now on no worker will save them. An answer in progress is
        saved as interrupted. Only the first call returns questions.
        """
        if self._closing:
            return []
        self._closing = True
        for lane in self._lanes.values():
            lane.worker.close_gate()
        self.cancel_load()  # quitting need not wait for a big model to finish loading
        returned = []
        for rid, active in list(self._active.items()):
            active.request.cancel.cancel()
            if active.request.question is not None and not active.request.question_saved.is_set():
                returned.append(active.request.question)
                self._return(rid)
            else:
                # Its worker saves it as interrupted; the app is going, so nobody is told
                # more about it (the history may be closed by the time a signal would arrive).
                self._end(rid)
        return returned

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop every answer, free the models and end the threads; return whether they ended.

        Waits up to ``timeout_ms`` in all for the workers to save the answers in progress (as
        interrupted). A second call does not wait again: it says whether the threads ended.
        """
        threads = [lane.thread for lane in self._lanes.values()]
        if self._shutdown_sent or not any(t.isRunning() for t in threads):
            return not any(t.isRunning() for t in threads)
        self._shutdown_sent = True
        self.begin_shutdown()
        self._shutdownRequested.emit()
        deadline = time.monotonic() + timeout_ms / 1000
        for thread in threads:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            if not thread.wait(left):
                log.warning("%s did not end within %d ms", thread.objectName(), timeout_ms)
        return not any(t.isRunning() for t in threads)

    # --- from the workers ------------------------------------------------------------------

    def _end(self, request_id: int) -> None:
        self._active.pop(request_id, None)
        self.requestEnded.emit(request_id)
        if not self._active:
            self.busyChanged.emit(False)

    def _return(self, request_id: int) -> None:
        active = self._active.get(request_id)
        if active is None:
            return
        request = active.request
        if request.question is not None and not request.question_saved.is_set():
            self.questionReturned.emit(request_id, request.conversation_id, request.question)
        self._end(request_id)

    def _load_ended(self) -> None:
        self._loads_queued = max(0, self._loads_queued - 1)
        self.load_fraction = None
        if self._loads_queued == 0:
            self._load_tokens.clear()

    @Slot(str)
    def _on_load_started(self, model_id: str) -> None:
        self.load_fraction = None
        self.loadStarted.emit(model_id)

    @Slot(str, float)
    def _on_load_progress(self, model_id: str, fraction: float) -> None:
        self.load_fraction = fraction
        self.loadProgress.emit(model_id, fraction)

    @Slot(str, list)
    def _on_loaded(self, model_id: str, warnings: list[Any]) -> None:
        self._load_ended()
        if self._loads_queued == 0:
            self.ready = True
            self.model_id = model_id  # also when a request loaded it
        self.loaded.emit(model_id, [str(w) for w in warnings])

    @Slot(str, str, str, str)
    def _on_load_failed(self, model_id: str, message: str, hint: str, details: str) -> None:
        self._load_ended()
        self.ready = False
        if self._loads_queued == 0:
            self.model_id = None  # the previous model was freed before this load was tried
        self.loadFailed.emit(model_id, message, hint, details)

    @Slot(str, str)
    def _on_load_cancelled(self, model_id: str, still_open: str) -> None:
        self._load_ended()
        if self._loads_queued == 0:
            # Cancelled before it started, the model loaded before stays; after, none does.
            self.model_id = still_open or None
            self.ready = bool(still_open)
        self.loadCancelled.emit(model_id)

    @Slot(int, int)
    def _on_answer_started(self, request_id: int, conversation_id: int) -> None:
        active = self._active.get(request_id)
        if active is not None:
            active.started = True
            self.answerStarted.emit(request_id, conversation_id)

    @Slot(int, int, int)
    def _on_question_saved(self, request_id: int, conversation_id: int, message_id: int) -> None:
        if request_id in self._active:
            self.questionSaved.emit(request_id, conversation_id, message_id)

    @Slot(int, str)
    def _on_chunk(self, request_id: int, text: str) -> None:
        active = self._active.get(request_id)
        if active is not None:
            active.text += text
            self.textReceived.emit(request_id, active.request.conversation_id, text)

    @Slot(int, int, int)
    def _on_answer_finished(self, request_id: int, conversation_id: int, message_id: int) -> None:
        if request_id in self._active:
            self.answerFinished.emit(request_id, conversation_id, message_id)
            self._end(request_id)

    @Slot(int, int, str, str, str, bool)
    def _on_answer_failed(
        self,
        request_id: int,
        conversation_id: int,
        message: str,
        hint: str,
        details: str,
        saved: bool,
    ) -> None:
        if request_id in self._active:
            self.answerFailed.emit(request_id, conversation_id, message, hint, details, saved)
            self._end(request_id)

    @Slot(int, int)
    def _on_answer_skipped(self, request_id: int, _conversation_id: int) -> None:
        self._return(request_id)


def _without_tracebacks(exc: BaseException) -> BaseException:
    """``exc`` for the asker to keep, its tracebacks dropped (once described and logged): they
    hold this worker's frames, and through them the request that would hold ``exc``, a cycle
    that the garbage collector would free at some random moment on some other thread."""
    chain: BaseException | None = exc
    visited: set[int] = set()
    while chain is not None and id(chain) not in visited:
        visited.add(id(chain))
        chain.__traceback__ = None
        chain = chain.__cause__ or chain.__context__
    return exc


def _answer_unsaved(
    provider: ChatProvider, request: AnswerRequest, on_chunk: Callable[[str], None]
) -> GenerationStats:
    """Answer ``request.messages`` without the history; a cancel keeps what was written."""
    messages = list(request.messages or ())
    if request.prepare is not None:
        messages = request.prepare(messages)
    generation = provider.stream_chat(messages, request.generation, request.cancel)
    try:
        generation.run(on_chunk)
    finally:
        generation.close()
    return generation.stats or GenerationStats()


def _snapshot(settings: Any) -> SettingsSnapshot:
    if isinstance(settings, SettingsSnapshot):
        return settings
    as_dict = getattr(settings, "as_dict", None)
    return SettingsSnapshot(as_dict() if as_dict is not None else dict(settings))


def _with_settings(request: AnswerRequest, settings: SettingsSnapshot) -> AnswerRequest:
    return replace(request, settings=settings)
