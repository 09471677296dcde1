"""The desktop front end (PySide6 Widgets): the only package that imports Qt.

``assistant.ui.app.run_app()`` opens the chat window. Everything here sits on the Qt-free core:
the models run on a worker thread (``worker.py``), history and settings come from the core.
"""
