"""The tray icon and its menu: Quick ask…, Open chat, the model and its state, Quit.

The menu exists whether or not the desktop has a tray (``QSystemTrayIcon`` needs one to show
anything; offscreen there is none), so its actions work and can be tested everywhere.
``keeps_running`` says whether closing the chat window leaves the app running here: only where a
tray shows the icon, and only while the setting ``keep_running_in_tray`` is on.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from assistant import APP_NAME
from assistant.ui.services import AppServices
from assistant.ui.theme import app_icon

log = logging.getLogger(__name__)


class Tray(QObject):
    """The app's tray icon (where there is a tray) and its menu.

    Signals:
        quickAskRequested(): "Quick ask…" was chosen.
        openChatRequested(): "Open chat" was chosen, or the icon clicked.
    Quit calls ``services.quit()``.
    """

    quickAskRequested = Signal()
    openChatRequested = Signal()

    def __init__(self, services: AppServices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.runner = services.runner
        self.menu = QMenu()
        self.menu.setAccessibleName(f"{APP_NAME} menu")
        self.quick_ask_action = QAction("Quick ask…", self)
        self.quick_ask_action.triggered.connect(self.quickAskRequested)
        self.open_chat_action = QAction("Open chat", self)
        self.open_chat_action.triggered.connect(self.openChatRequested)
        self.model_action = QAction("", self)
        self.model_action.setEnabled(False)  # shows the state; nothing to click
        self.api_action = QAction("", self)
        self.api_action.setEnabled(False)  # "Local API on at …" while the server runs
        self.quit_action = QAction("Quit", self)
        self.quit_action.triggered.connect(services.quit)
        for action in (self.quick_ask_action, self.open_chat_action):
            self.menu.addAction(action)
        self.menu.addSeparator()
        self.menu.addAction(self.model_action)
        self.menu.addAction(self.api_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.icon = QSystemTrayIcon(app_icon(), self)
            self.icon.setContextMenu(self.menu)
            self.icon.activated.connect(self._on_icon_activated)
        self.runner.loadStarted.connect(self._on_model_changed)
        self.runner.loaded.connect(self._on_model_changed)
        self.runner.loadFailed.connect(self._on_model_changed)
        self.runner.loadCancelled.connect(self._on_model_changed)
        self.runner.busyChanged.connect(self._on_busy_changed)
        services.local_api.stateChanged.connect(self._on_api_changed)
        self._on_model_changed()
        self._on_api_changed()

    @property
    def available(self) -> bool:
        """A tray shows the icon here."""
        return self.icon is not None

    @property
    def keeps_running(self) -> bool:
        return self.available and bool(self.services.settings["keep_running_in_tray"])

    def show(self) -> None:
        if self.icon is not None:
            self.icon.show()

    def hide(self) -> None:
        if self.icon is not None:
            self.icon.hide()

    def model_state(self, busy: bool | None = None) -> str:
        """The line the menu shows about the model: which one, and what it is doing
        (``busy``: whether some request is queued or running, when known better than the
        runner's own flag, which changes right after its signal)."""
        runner = self.runner
        busy = runner.busy if busy is None else busy
        if runner.model_id is None:
            return "No model loaded"
        if runner.loading:
            state = "loading"
        elif not runner.ready:
            state = "not loaded"
        elif busy:
            state = "answering"
        else:
            state = "ready"
        return f"{runner.model_id}: {state}"

    def notify(self, title: str, text: str) -> bool:
        """A tray balloon; whether one could be shown."""
        if self.icon is None or not self.icon.supportsMessages():
            return False
        self.icon.showMessage(title, text, app_icon(), 8000)
        return True

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self._show_state(self.model_state(busy))

    @Slot()
    def _on_model_changed(self, *_args: object) -> None:
        self._show_state(self.model_state())

    @Slot()
    def _on_api_changed(self) -> None:
        api = self.services.local_api
        self.api_action.setText(f"Local API on at {api.base_url}" if api.is_running else "")
        self.api_action.setVisible(api.is_running)

    def _show_state(self, text: str) -> None:
        self.model_action.setText(text)
        if self.icon is not None:
            self.icon.setToolTip(f"{APP_NAME} — {text}")

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_icon_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.openChatRequested.emit()
