"""The answer queue of ``offline-assistant serve``: one thread owns the model, no Qt.

The desktop app answers API requests on its shared ``ModelRunner``; without a window there is
no runner to share, and starting Qt's event loop only to reach one would make ``serve`` load
the Qt libraries (and the runner's error reporting, which lives with the widgets) for nothing.
A plain thread and a FIFO do the same job here: one request at a time on one loaded model, in
order, each stoppable at the next token.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from assistant.api.jobs import JobEvents, Slots, Ticket, api_models, pick_model
from assistant.api.protocol import ApiModel, ChatJob, api_error_for, model_loading
from assistant.engine.base import ChatProvider, GenerationSettings, GenerationStats
from assistant.models.store import ModelStore
from assistant.providers import LOCAL, ProviderRegistry, ProviderSettings, local_provider

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Load:
    model_id: str


@dataclass(frozen=True)
class _Marker:
    done: threading.Event


@dataclass(frozen=True)
class _Answer:
    job: ChatJob
    model_id: str
    events: JobEvents
    ticket: Ticket


class EngineQueue:
    """Answers jobs on one worker thread that owns the one loaded model.

    ``preload(model_id)`` loads a model ahead of the first request; while it loads, requests
    are refused with 503 (clients retry). A job asking for another installed model loads that
    one in its turn (the previous one is freed first). ``close()`` ends the thread.
    """

    def __init__(
        self,
        models: ModelStore,
        settings: ProviderSettings,
        generation: GenerationSettings,
        *,
        providers: ProviderRegistry | None = None,
        limit: int | None = None,
    ) -> None:
        self._models = models
        self._settings = settings
        self._generation = generation
        self._registry = providers or ProviderRegistry([local_provider(models)])
        self._slots = Slots(limit) if limit is not None else Slots()
        self._tasks: queue.SimpleQueue[_Load | _Answer | _Marker | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._loading: str | None = None  # a preload in progress
        self._engine: ChatProvider | None = None
        self._engine_id: str | None = None  # read by the server thread: a hint, under _lock
        self._thread = threading.Thread(target=self._run, name="api-model", daemon=True)
        self._thread.start()

    # --- AnswerQueue -----------------------------------------------------------------------

    def models(self) -> list[ApiModel]:
        return api_models(self._models.list_installed())

    def generation_defaults(self) -> GenerationSettings:
        return self._generation

    def submit(self, job: ChatJob, events: JobEvents) -> Ticket:
        with self._lock:
            if self._loading is not None:
                raise model_loading(self._loading)
            loaded = self._engine_id
        known = [model.id for model in self._models.list_installed()]
        model_id = pick_model(job.model, loaded, self._models.default_id(), known)
        self._slots.take()
        ticket = Ticket()
        self._tasks.put(_Answer(job, model_id, events, ticket))
        return ticket

    # --- control ---------------------------------------------------------------------------

    @property
    def loaded_model(self) -> str | None:
        with self._lock:
            return self._engine_id

    @property
    def loading(self) -> bool:
        with self._lock:
            return self._loading is not None

    def preload(self, model_id: str) -> None:
        """Load ``model_id`` now, in the background; requests get 503 until it is ready."""
        with self._lock:
            self._loading = model_id
        self._tasks.put(_Load(model_id))

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until no preload is in progress (for ``serve``'s start and tests)."""
        done = threading.Event()
        self._tasks.put(_Marker(done))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking jobs, free the model and end the thread (after the job in progress,
        which should have been cancelled); returns whether it ended in time."""
        self._tasks.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                break
            if isinstance(task, _Marker):
                task.done.set()
            elif isinstance(task, _Load):
                self._preload(task.model_id)
            else:
                try:
                    self._answer(task)
                finally:
                    self._slots.give_back()
        self._unload()
        # Jobs still waiting are answered with a clean refusal rather than left hanging.
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if isinstance(task, _Answer):
                task.events.failed(model_loading(None))
                self._slots.give_back()

    def _preload(self, model_id: str) -> None:
        try:
            self._open(model_id)
        except Exception as exc:  # the next request tries again and reports it
            log.warning("Could not load %s: %s", model_id, exc)
        finally:
            with self._lock:
                self._loading = None

    def _open(self, model_id: str) -> ChatProvider:
        if self._engine is not None and self._engine_id == model_id:
            return self._engine
        self._unload()  # free the memory of the previous model before loading the next
        engine = self._registry.get(LOCAL).open(model_id, self._settings)
        with self._lock:
            self._engine, self._engine_id = engine, model_id
        return engine

    def _unload(self) -> None:
        engine = self._engine
        with self._lock:
            self._engine, self._engine_id = None, None
        if engine is not None:
            try:
                engine.close()
            except Exception:
                log.exception("Closing %s failed", engine.model_name)

    def _answer(self, task: _Answer) -> None:
        events, cancel = task.events, task.ticket.cancel_token
        if cancel.cancelled:  # the client left while it waited
            events.finished(GenerationStats(model=task.model_id, stop_reason="cancelled"))
            return
        try:
            engine = self._open(task.model_id)
            events.started(engine.model_name)
            generation = engine.stream_chat(list(task.job.messages), task.job.generation, cancel)
            try:
                generation.run(events.text)
            finally:
                generation.close()
        except Exception as exc:  # every failure goes back to its client, none vanishes here
            events.failed(api_error_for(exc))
            return
        events.finished(generation.stats or GenerationStats(model=task.model_id))
