"""The seam between the HTTP server and whoever runs the model.

The server checks a request into a ``ChatJob`` and hands it to an ``AnswerQueue`` with a
``JobEvents`` to report to. A queue answers jobs one at a time on the one model, in the order
they came, and holds at most ``limit`` of them (running or waiting): beyond that it refuses at
once (429) rather than letting clients pile up.

``submit`` is called on the server's thread and must return at once; the events are called on
whatever thread the queue answers on, so an implementation of ``JobEvents`` must hand them
over to its own thread (the server puts them on its event loop).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from assistant.api.protocol import ApiError, ApiModel, ChatJob, queue_full, unknown_model
from assistant.engine.base import CancelToken, GenerationSettings, GenerationStats

QUEUE_LIMIT = 16
"""Jobs a queue holds at most, the one being answered included."""


class JobEvents(Protocol):
    """What a queue reports about one job, in this order: ``started`` once it is taken up,
    ``text`` for each piece of the answer, then exactly one of ``finished`` (also when
    cancelled: ``stats.stop_reason == "cancelled"``) or ``failed``."""

    def started(self, model_id: str) -> None: ...

    def text(self, text: str) -> None: ...

    def finished(self, stats: GenerationStats) -> None: ...

    def failed(self, error: ApiError) -> None: ...


class Ticket:
    """A job handed to a queue: ``cancel()`` (any thread) stops it at the next token, or
    before it starts if it is still waiting."""

    def __init__(self, cancel: CancelToken | None = None) -> None:
        self.cancel_token = cancel or CancelToken()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled


class AnswerQueue(Protocol):
    """Who answers the API's jobs: the app's shared runner or ``serve``'s own engine thread."""

    def models(self) -> list[ApiModel]:
        """The installed models (``/v1/models``)."""
        ...

    def generation_defaults(self) -> GenerationSettings:
        """How to sample when a request does not say: the user's settings."""
        ...

    def submit(self, job: ChatJob, events: JobEvents) -> Ticket:
        """Queue ``job``; raises ``ApiError`` at once for an unknown model (404), a full queue
        (429) or a model loading (503)."""
        ...


class Slots:
    """A thread-safe count of the jobs a queue holds, refusing beyond ``limit``."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Hold one place; ``ApiError`` 429 when all are held."""
        with self._lock:
            if self._held >= self.limit:
                raise queue_full(self.limit)
            self._held += 1

    def give_back(self) -> None:
        with self._lock:
            self._held = max(0, self._held - 1)

    @property
    def held(self) -> int:
        with self._lock:
            return self._held


class _InstalledModel(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def added_at(self) -> str: ...


def api_models(installed: Sequence[_InstalledModel]) -> list[ApiModel]:
    """Installed models as the API lists them (``created``: when they were added)."""
    return [ApiModel(model.id, _epoch(model.added_at)) for model in installed]


def pick_model(
    requested: str | None, loaded: str | None, default: str | None, known: list[str]
) -> str:
    """The model a job runs on: the one asked for if installed (else 404), otherwise the one
    loaded now, otherwise the default."""
    if requested:
        if requested not in known:
            raise unknown_model(requested, known)
        return requested
    chosen = loaded or default
    if chosen is None:
        raise ApiError(
            404,
            "No model is installed yet. Get one in the app, or with "
            "`offline-assistant models pull ID`.",
            param="model",
            code="model_not_found",
        )
    return chosen


def _epoch(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0
