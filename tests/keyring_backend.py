"""An in-memory keyring for tests: a headless test box has no OS keyring to talk to.

Its priority is negative so that ``keyring`` never picks it on its own; tests install it with
``keyring.set_keyring(MemoryKeyring())`` (see the ``memory_keyring`` fixtures).
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        return -10

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")
