"""The local API inside the desktop app: a third client of the shared model runner.

``RunnerQueue`` is the ``AnswerQueue`` the API server talks to: each API request becomes an
``AnswerRequest`` on ``services.runner``, the same loaded model and the same queue as the chat
window, followed by its request id. The server calls ``submit`` on its own thread; the request
crosses to the Qt thread through a queued signal, and everything that touches the runner, the
history or the settings happens there. Nothing here waits: the Qt thread never blocks on the
server, nor the server on the Qt thread.

API requests are not written to the chat history (``AnswerRequest.messages``) unless the user
turns on "Keep API requests in the chat history": each request is then saved as a chat of its
own.

``LocalApi`` starts and stops the server as Settings → Local API says.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from assistant.api.jobs import JobEvents, Slots, Ticket, api_models, pick_model
from assistant.api.protocol import (
    ApiError,
    ApiModel,
    ChatJob,
    api_error_for,
    model_loading,
)
from assistant.chat.history import title_from_question
from assistant.engine.base import GenerationSettings, GenerationStats
from assistant.errors import AssistantError
from assistant.ui.worker import AnswerRequest, SettingsSnapshot

if TYPE_CHECKING:
    from assistant.api.server import ApiServer
    from assistant.ui.services import AppServices

log = logging.getLogger(__name__)

API_CLIENT = "api"


def _alive(owner: weakref.ref[AppServices]) -> AppServices:
    services = owner()
    if services is None:
        raise RuntimeError("the app's services are gone")
    return services


def _quitting() -> ApiError:
    return ApiError(503, "Offline Assistant is quitting.", kind="server_error", code="shutdown")


@dataclass
class _Job:
    job: ChatJob
    model_id: str
    events: JobEvents
    ticket: Ticket
    request: AnswerRequest | None = None
    done: bool = False


class RunnerQueue(QObject):
    """API jobs on the app's ``ModelRunner`` (see the module docstring); lives on the Qt
    thread, ``submit``, ``models`` and ``generation_defaults`` may be called from any."""

    _submitted = Signal(object)

    def __init__(self, services: AppServices, limit: int | None = None) -> None:
        super().__init__(services)
        # Weak: the services own this object; a strong reference back would keep them alive
        # in a cycle, freed by the garbage collector at a random moment instead of at once.
        self._owner = weakref.ref(services)
        self._runner = services.runner
        self._slots = Slots(limit) if limit is not None else Slots()
        self._jobs: dict[int, _Job] = {}  # request id -> job; Qt thread only
        self._lock = threading.Lock()
        self._closed = False
        # What the runner is doing, kept here for the server's thread (it must not ask Qt).
        self._loading: str | None = self._runner.model_id if self._runner.loading else None
        self._loaded: str | None = self._runner.model_id if self._runner.ready else None
        self._submitted.connect(self._on_submitted)
        runner = self._runner
        runner.loadStarted.connect(self._on_load_started)
        runner.loaded.connect(self._on_loaded)
        runner.loadFailed.connect(self._on_load_failed)
        runner.loadCancelled.connect(self._on_load_cancelled)
        runner.answerStarted.connect(self._on_answer_started)
        runner.textReceived.connect(self._on_text)
        runner.answerFinished.connect(self._on_answer_finished)
        runner.answerFailed.connect(self._on_answer_failed)
        runner.requestEnded.connect(self._on_request_ended)

    @property
    def _services(self) -> AppServices:
        return _alive(self._owner)

    # --- AnswerQueue (any thread) ----------------------------------------------------------

    def models(self) -> list[ApiModel]:
        return api_models(self._services.models.list_installed())

    def generation_defaults(self) -> GenerationSettings:
        return self._services.settings.generation_settings()

    def submit(self, job: ChatJob, events: JobEvents) -> Ticket:
        with self._lock:
            if self._closed:
                raise _quitting()
            if self._loading is not None:
                raise model_loading(self._loading)
            loaded = self._loaded
        store = self._services.models
        known = [model.id for model in store.list_installed()]
        model_id = pick_model(job.model, loaded, store.default_id(), known)
        self._slots.take()
        ticket = Ticket()
        self._submitted.emit(_Job(job, model_id, events, ticket))
        return ticket

    def close(self) -> None:
        """Refuse new jobs and end those not answered yet (the server is stopping); Qt
        thread. Their answers on the runner are stopped."""
        with self._lock:
            self._closed = True
        for job in list(self._jobs.values()):
            job.ticket.cancel()
            if not job.done:
                job.done = True
                job.events.failed(_quitting())

    # --- on the Qt thread ------------------------------------------------------------------

    @Slot(object)
    def _on_submitted(self, job: _Job) -> None:
        if self._closed or self._services.shutting_down:
            job.events.failed(_quitting())
            self._slots.give_back()
            return
        try:
            job.request = self._request_for(job)
        except Exception as exc:  # a history that cannot be written, say
            job.events.failed(api_error_for(exc))
            self._slots.give_back()
            return
        self._jobs[job.request.id] = job
        self._runner.submit(job.request)

    def _request_for(self, job: _Job) -> AnswerRequest:
        settings = self._services.settings
        snapshot = SettingsSnapshot(settings.as_dict())
        generation, messages = job.job.generation, job.job.messages
        if not settings["api_keep_history"]:
            return AnswerRequest(
                0,
                generation,
                model=job.model_id,
                client=API_CLIENT,
                settings=snapshot,
                cancel=job.ticket.cancel_token,
                messages=messages,
            )
        # Kept: a chat of its own holding what the program sent, then the answer; the model
        # is still sent exactly the program's messages.
        history = self._services.history
        system = next((m.content for m in messages if m.role == "system"), None)
        last = messages[-1]
        question = last.content if last.role == "user" else None
        conversation = history.create_conversation(
            title="API: " + title_from_question(question or "request"),
            model=job.model_id,
            system_prompt=system,
            settings=generation.to_dict(),
        )
        earlier = messages[:-1] if question is not None else messages
        for message in earlier:
            if message.role != "system":
                history.add_message(conversation.id, message.role, message.content)
        return AnswerRequest(
            conversation.id,
            generation,
            question,
            model=job.model_id,
            client=API_CLIENT,
            settings=snapshot,
            cancel=job.ticket.cancel_token,
            prepare=lambda _saved: list(messages),
        )

    @Slot(str)
    def _on_load_started(self, model_id: str) -> None:
        with self._lock:
            self._loading, self._loaded = model_id, None

    @Slot(str, list)
    def _on_loaded(self, model_id: str, _warnings: list[str]) -> None:
        with self._lock:
            if not self._runner.loading:
                self._loading = None
            self._loaded = model_id

    @Slot(str, str, str, str)
    def _on_load_failed(self, _model_id: str, *_details: str) -> None:
        with self._lock:
            if not self._runner.loading:
                self._loading = None
            self._loaded = None

    @Slot(str)
    def _on_load_cancelled(self, _model_id: str) -> None:
        with self._lock:
            if not self._runner.loading:
                self._loading = None
            self._loaded = self._runner.model_id if self._runner.ready else None

    @Slot(int, int)
    def _on_answer_started(self, request_id: int, _conversation_id: int) -> None:
        job = self._jobs.get(request_id)
        if job is not None and not job.done:
            job.events.started(job.model_id)

    @Slot(int, int, str)
    def _on_text(self, request_id: int, _conversation_id: int, text: str) -> None:
        job = self._jobs.get(request_id)
        if job is not None and not job.done:
            job.events.text(text)

    @Slot(int, int, int)
    def _on_answer_finished(self, request_id: int, _conversation_id: int, _message: int) -> None:
        job = self._jobs.get(request_id)
        if job is not None and not job.done and job.request is not None:
            job.done = True
            stats = job.request.outcome.stats or GenerationStats(model=job.model_id)
            job.events.finished(stats)

    @Slot(int, int, str, str, str, bool)
    def _on_answer_failed(
        self, request_id: int, _conversation_id: int, message: str, hint: str, *_rest: object
    ) -> None:
        job = self._jobs.get(request_id)
        if job is not None and not job.done and job.request is not None:
            job.done = True
            error = job.request.outcome.error or AssistantError(message, hint=hint or None)
            job.events.failed(api_error_for(error))

    @Slot(int)
    def _on_request_ended(self, request_id: int) -> None:
        job = self._jobs.pop(request_id, None)
        if job is None:
            return
        self._slots.give_back()
        if not job.done:  # stopped before it started, or the app is quitting
            job.done = True
            job.events.finished(GenerationStats(model=job.model_id, stop_reason="cancelled"))


class LocalApi(QObject):
    """Runs the API server while Settings → Local API has it on; built by ``AppServices``.

    ``is_running``, ``address``, ``base_url`` and ``error`` say how it stands (the tray menu
    shows "Local API on"); ``token`` is what programs send.

    Signals:
        stateChanged(): the server started or stopped, or could not start (``error``).
    """

    stateChanged = Signal()

    def __init__(self, services: AppServices) -> None:
        super().__init__(services)
        self._owner = weakref.ref(services)  # weak: see RunnerQueue
        self._server: ApiServer | None = None
        self._queue: RunnerQueue | None = None
        self.error = ""
        services.settingsChanged.connect(self._on_settings_changed)
        services.shuttingDown.connect(self.stop)

    @property
    def _services(self) -> AppServices:
        return _alive(self._owner)

    @property
    def is_running(self) -> bool:
        return self._server is not None and self._server.is_running

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` while running, else ""."""
        return self._server.address if self._server is not None and self.is_running else ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` while running, else ""."""
        return self._server.base_url if self._server is not None and self.is_running else ""

    @property
    def token(self) -> str | None:
        return self._server.token if self._server is not None else None

    def apply(self) -> None:
        """Start, restart or stop the server to match the settings."""
        settings = self._services.settings
        wanted = bool(settings["api_enabled"]) and not self._services.shutting_down
        port = settings["api_port"]
        if self._server is not None and (not wanted or self._server.port != port):
            self.stop()
        if wanted and self._server is None:
            self._start(port)

    def _start(self, port: int) -> None:
        from assistant.api.server import ApiServer
        from assistant.secrets import ensure_api_token

        queue = RunnerQueue(self._services)
        try:
            server = ApiServer(queue, token=ensure_api_token(), port=port)
            server.start()
        except AssistantError as exc:
            queue.close()
            queue.deleteLater()
            self.error = exc.full_text()
            log.warning("The local API did not start: %s", self.error)
        else:
            self._server, self._queue, self.error = server, queue, ""
        self.stateChanged.emit()

    @Slot()
    def stop(self) -> None:
        """Stop the server (its unanswered requests get a 503); safe to call again."""
        server, queue = self._server, self._queue
        self._server = self._queue = None
        if queue is not None:
            queue.close()  # first: the server's requests end without waiting for Qt
        if server is not None:
            server.stop()
        if queue is not None:
            queue.deleteLater()
        if server is not None:
            self.stateChanged.emit()

    @Slot(list)
    def _on_settings_changed(self, keys: list[str]) -> None:
        if {"api_enabled", "api_port"} & set(keys):
            self.apply()
