"""The running app's side of the single-instance hand-over (see ``assistant.ipc``).

``become_server(paths)`` is called by a start that found nobody listening: under the instance
lock it tries the hand-over once more (another start may have won the race meanwhile), removes a
stale socket and listens. It returns the ``InstanceServer``, or ``None`` when another app took
the command after all.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from assistant import ipc
from assistant.paths import AppPaths

log = logging.getLogger(__name__)


class InstanceServer(QObject):
    """Listens for later starts of the app.

    Signals:
        commandReceived(str): a later start asked for ``quick-ask``, ``show`` or ``start``.
    """

    commandReceived = Signal(str)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server = QLocalServer(self)
        # Only this user may connect (the socket of a Unix server is made 0600).
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._on_new_connection)
        self._buffers: dict[QLocalSocket, bytes] = {}

    def listen(self) -> bool:
        """Listen, first removing a socket a crashed app left behind (the caller holds the
        instance lock and nobody answered on it)."""
        QLocalServer.removeServer(self.name)
        if not self._server.listen(self.name):
            log.warning(
                "Could not listen for other starts on %s: %s", self.name, self._server.errorString()
            )
            return False
        return True

    @property
    def listening(self) -> bool:
        return self._server.isListening()

    def close(self) -> None:
        """Stop listening and remove the socket, so the next start does not try it."""
        if self._server.isListening():
            self._server.close()
            QLocalServer.removeServer(self.name)

    @Slot()
    def _on_new_connection(self) -> None:
        while self._server.hasPendingConnections():
            sock = self._server.nextPendingConnection()
            self._buffers[sock] = b""
            sock.readyRead.connect(lambda s=sock: self._on_ready_read(s))
            sock.disconnected.connect(lambda s=sock: self._on_disconnected(s))
            if sock.bytesAvailable():
                self._on_ready_read(sock)

    def _on_ready_read(self, sock: QLocalSocket) -> None:
        data = self._buffers.get(sock, b"") + bytes(sock.readAll().data())
        if b"\n" not in data:
            self._buffers[sock] = data
            return
        line, _rest = data.split(b"\n", 1)
        self._buffers[sock] = b""
        command = ipc.decode(line)
        if command is None:
            log.warning("Ignored an unknown request from another start: %r", line[:200])
            sock.disconnectFromServer()
            return
        # Confirm first: the other start exits at once, and whatever the command opens may
        # take a moment.
        sock.write(ipc.OK_REPLY)
        sock.flush()
        sock.disconnectFromServer()
        self.commandReceived.emit(command)

    def _on_disconnected(self, sock: QLocalSocket) -> None:
        self._buffers.pop(sock, None)
        sock.deleteLater()


def become_server(
    paths: AppPaths, command: str, parent: QObject | None = None
) -> InstanceServer | None:
    """Become the app's one server for ``paths``, or hand ``command`` to the app that became it
    first (then ``None``). A server that cannot listen is still returned (the app runs; later
    starts simply open another copy)."""
    with ipc.instance_lock(paths):
        if ipc.hand_over(command, paths):
            return None
        server = InstanceServer(ipc.server_name(paths), parent)
        server.listen()
        return server
