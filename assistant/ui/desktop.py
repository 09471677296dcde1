"""What runs beside the chat window: the tray, the quick-ask popup, the global shortcut, the
hand-over from later starts and the start-at-login entry.

``DesktopShell`` wires them to the app's services and the chat window. Closing the chat window
leaves the app running when the tray keeps it (``Tray.keeps_running``): the first time, a tray
notification says so. Quitting is the tray's Quit or Ctrl+Q (``services.quit``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from assistant import APP_NAME, autostart, ipc
from assistant.ui.hotkey import GlobalHotkey
from assistant.ui.instance import InstanceServer
from assistant.ui.main_window import MainWindow
from assistant.ui.services import AppServices
from assistant.ui.tray import Tray

if TYPE_CHECKING:
    from assistant.ui.quick_ask import QuickAskPopup

log = logging.getLogger(__name__)

NOTICE_KEY = "tray_notice_shown"


class DesktopShell(QObject):
    """The tray, the popup and the shortcut of one running app (not a window itself)."""

    def __init__(
        self,
        services: AppServices,
        window: MainWindow,
        server: InstanceServer | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.window = window
        self.server = server
        self.tray = Tray(services, self)
        self.hotkey = GlobalHotkey(self)
        self.hotkey_problem = ""
        self._popup: QuickAskPopup | None = None
        self._x11: Any = None
        self.tray.quickAskRequested.connect(self.quick_ask)
        self.tray.openChatRequested.connect(self.show_chat)
        self.hotkey.activated.connect(self._on_hotkey)
        if server is not None:
            server.commandReceived.connect(self.handle_command)
        services.settingsChanged.connect(self._on_settings_changed)
        services.shuttingDown.connect(self._on_shutting_down)
        window.installEventFilter(self)
        self.tray.show()
        self._apply_keep_running()
        self.set_hotkey(services.settings["quick_ask_hotkey"])
        # Built while the app is idle, so the first quick ask shows at once.
        QTimer.singleShot(1500, self, self._on_idle)

    @property
    def popup(self) -> QuickAskPopup:
        """Made on first use: a start that never asks pays nothing for it."""
        if self._popup is None:
            # Imported on first use, not at start-up: the window paints sooner.
            from assistant.ui.quick_ask import QuickAskPopup

            self._popup = QuickAskPopup(self.services)
            self._popup.continueRequested.connect(self.continue_in_chat)
        return self._popup

    @Slot()
    def _on_idle(self) -> None:
        if not self.services.shutting_down:
            popup = self.popup  # built now, shown later
            # Its style and native window too: the first quick ask then only maps a window
            # (about 25 ms less on the way from a hotkey or `--quick-ask` to the popup).
            popup.ensurePolished()
            popup.winId()

    # --- commands --------------------------------------------------------------------------

    @Slot(str)
    def handle_command(self, command: str) -> None:
        """A later start handed this over (``assistant.ipc``)."""
        log.info("Another start asked for %s", command)
        if command == ipc.QUICK_ASK:
            self.quick_ask()
        elif command == ipc.SHOW:
            self.show_chat()

    @Slot()
    def show_chat(self) -> None:
        window = self.window
        if window.isMinimized():
            window.showNormal()
        window.show()
        window.raise_()
        window.activateWindow()
        self._focus_x11(window)

    @Slot()
    def quick_ask(self) -> None:
        popup = self.popup
        popup.show_popup()
        self._focus_x11(popup)
        log.info("Quick ask popup shown")

    @Slot(int)
    def continue_in_chat(self, conversation_id: int) -> None:
        self.window.sidebar.refresh(select_id=conversation_id)
        self.window.open_conversation(conversation_id)
        self.show_chat()
        self.window.composer.focus_input()

    @Slot(int)
    def _on_hotkey(self, _time: int) -> None:
        popup = self._popup
        if popup is not None and popup.isVisible() and popup.isActiveWindow():
            popup.dismiss()  # the same keys close it again
        else:
            self.quick_ask()

    def _focus_x11(self, widget: Any) -> None:
        """Without a window manager the X server ignores Qt's focus request when it carries a
        stale timestamp (the app got no input event lately): ask again with CurrentTime, once
        the window is mapped."""
        if QGuiApplication.platformName() != "xcb":
            return
        if self._x11 is None:
            try:
                from assistant.ui.x11 import Display

                self._x11 = Display()
            except OSError as exc:
                log.debug("No X11 connection for focusing: %s", exc)
                self._x11 = False
        if not self._x11:
            return

        def focus(attempt: int = 0) -> None:
            if not widget.isVisible() or widget.isActiveWindow():
                return
            if not self._x11.focus(int(widget.winId())) and attempt < 5:
                QTimer.singleShot(30, widget, lambda: focus(attempt + 1))

        QTimer.singleShot(0, widget, focus)

    # --- settings --------------------------------------------------------------------------

    def set_hotkey(self, text: str) -> str:
        """Use ``text`` as the global shortcut; returns (and remembers) why not, or ""."""
        self.hotkey_problem = self.hotkey.set_shortcut(text)
        if self.hotkey_problem:
            log.warning("Quick ask shortcut: %s", self.hotkey_problem)
        return self.hotkey_problem

    def _apply_keep_running(self) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(not self.tray.keeps_running)

    @Slot(list)
    def _on_settings_changed(self, keys: list[str]) -> None:
        settings = self.services.settings
        if "keep_running_in_tray" in keys:
            self._apply_keep_running()
        if "quick_ask_hotkey" in keys:
            problem = self.set_hotkey(settings["quick_ask_hotkey"])
            if problem:
                self.window.show_problem(problem)
        if "start_at_login" in keys:
            try:
                autostart.set_enabled(bool(settings["start_at_login"]))
            except OSError as exc:
                self.window.show_problem(
                    f"Could not change starting at login: {exc}", "Check your home folder."
                )

    # --- closing ---------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            QTimer.singleShot(0, self, self._on_window_closed)
        return False

    @Slot()
    def _on_window_closed(self) -> None:
        if self.services.shutting_down or not self.tray.keeps_running:
            return
        state = self.services.state
        if state[NOTICE_KEY]:
            return
        shortcut = str(self.hotkey.shortcut) if self.hotkey.active else ""
        text = f"{APP_NAME} keeps running here" + (
            f": press {shortcut} to ask from any app." if shortcut else "."
        )
        if self.tray.notify(APP_NAME, text + " Quit from this icon's menu."):
            state.set(NOTICE_KEY, True)
            try:
                state.save()
            except OSError as exc:
                log.warning("Could not save the window state: %s", exc)

    @Slot()
    def _on_shutting_down(self) -> None:
        if self._popup is not None:
            self._popup.hide()
        self.hotkey.close()
        self.tray.hide()
        if self.server is not None:
            self.server.close()
        if self._x11:
            self._x11.close()
            self._x11 = None
