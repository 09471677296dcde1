"""The local OpenAI-compatible API: other programs on this computer use the app's model.

- ``protocol``: the OpenAI shapes: a request checked and turned into a ``ChatJob``, the
  response bodies and stream chunks, errors in OpenAI's error shape.
- ``jobs``: the seam between the HTTP server and whoever runs the model: an ``AnswerQueue``
  takes a ``ChatJob`` and reports on it through ``JobEvents``. The desktop app's queue is the
  shared ``ModelRunner`` (``assistant.ui.local_api``); ``offline-assistant serve`` uses
  ``EngineQueue`` (``engine_queue``), one thread that owns the model, without Qt.
- ``server``: the Starlette app (auth, body limit, streaming) and ``ApiServer``, which runs it
  under uvicorn on a thread of its own, so it never blocks the caller's thread.

Qt-free: the app and the CLI are two front ends on the same server.
"""
