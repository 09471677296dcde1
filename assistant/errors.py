"""Known problems of the environment, each with a sentence a user can act on.

Anything that is not an ``AssistantError`` is a bug: front ends log its traceback and show a calm
"something went wrong" report. A cancel is not an error and is not an ``AssistantError``.
"""

from __future__ import annotations

import ssl


class AssistantError(Exception):
    """A known problem. ``str(err)`` is the user-facing sentence; ``hint`` says what to do next.

    Both front ends show ``hint``, so it names no terminal command and no window control: it says
    what to do ("Download it again, or pick another file."). ``command`` is the terminal command
    that does it, if there is one; only the CLI shows it (the GUI offers buttons instead).
    """

    hint: str = ""
    command: str | None = None

    def __init__(
        self, message: str, *, hint: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if command is not None:
            self.command = command

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def full_text(self) -> str:
        """The sentence and the hint, for any front end (without ``command``)."""
        return f"{self.message} {self.hint}".strip()


class Cancelled(Exception):
    """The user stopped an operation. Never shown as an error."""


# --- configuration and catalog -------------------------------------------------------------


class CatalogError(AssistantError):
    """The model catalog file is malformed."""


class ModelNotFoundError(AssistantError):
    """No model with that id is in the catalog or installed."""


class NoModelError(AssistantError):
    """No model is installed or chosen yet."""


# --- model files -----------------------------------------------------------------------------


class ModelFileError(AssistantError):
    """A model file cannot be used."""


class ModelFileMissingError(ModelFileError):
    pass


class NotGGUFError(ModelFileError):
    pass


class CorruptModelError(ModelFileError):
    """The file starts like a GGUF but is truncated or damaged."""


class UnsupportedArchitectureError(ModelFileError):
    """The file holds a model architecture this build of llama.cpp cannot run."""

    def __init__(
        self,
        architecture: str,
        message: str,
        *,
        hint: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, command=command)
        self.architecture = architecture


class InsufficientMemoryError(AssistantError):
    pass


class ModelTooLargeError(InsufficientMemoryError):
    """A download refused before it started: the model would not run in this computer's
    memory. The user may still ask for it (``models pull --anyway``, "Download anyway")."""


class ModelLoadError(ModelFileError):
    """llama.cpp refused the file for a reason we could not name more precisely."""


# --- generation ------------------------------------------------------------------------------


class EngineUnavailableError(AssistantError):
    """llama.cpp cannot run here: its library is missing or broken, it was built for a newer
    processor, or it needs a GPU driver this computer lacks. Local models cannot load; the
    rest of the app (history, settings, other providers) still works."""


class ContextOverflowError(AssistantError):
    """The conversation does not fit in the context window and the policy says refuse."""


# --- history ---------------------------------------------------------------------------------


class HistoryError(AssistantError):
    pass


class ConversationNotFoundError(HistoryError):
    pass


class _NamesAPath(AssistantError):
    """An error about one path, kept as ``path`` for the front end that offers the fix."""

    def __init__(
        self,
        path: object,
        message: str,
        *,
        hint: str | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, command=command)
        self.path = path


class HistoryDamagedError(_NamesAPath, HistoryError):
    """The history database is damaged (found at start or at any read or write). The store
    stops writing to the file; front ends offer to move it aside and recover what can be read
    (:mod:`assistant.chat.recovery`). ``path`` is the damaged file."""

    # ``path`` is taken by _NamesAPath.


class HistoryReadOnlyError(HistoryError):
    """The history was opened read-only (its folder or file cannot be written): it can be read,
    not changed."""


class ConversationBusyError(HistoryError):
    """Another process is answering a question in the same conversation right now."""


class ImportFormatError(HistoryError):
    """A conversation file to import is not in the expected format."""


# --- the file system and input ----------------------------------------------------------------


class FileAccessError(_NamesAPath, AssistantError):
    """A path cannot be used: no permission, a symlink loop, not a regular file, not a folder.
    ``path`` is the path named."""

    # ``path`` is taken by _NamesAPath.


class FilePermissionError(FileAccessError):
    """This user may not read (or write) the path."""


class SymlinkLoopError(FileAccessError):
    """The path is a symbolic link that leads back to itself."""


class NotARegularFileError(FileAccessError):
    """The path is a folder, a FIFO, a device or a socket where a file was expected. Refused
    without opening it (opening a FIFO would wait forever)."""


class InvalidTextError(AssistantError):
    """Text that is not valid UTF-8 (an argument, a line typed, a file). The message names the
    byte position."""


class OutOfRangeError(AssistantError):
    """A number outside the range the settings schema declares (or outside any sensible one)."""


class EmptyQuestionError(AssistantError):
    """A question with no text (empty or only whitespace)."""


# --- getting models (downloads, imports, the Hub, the keyring) -------------------------------


class DiskFullError(AssistantError):
    """Not enough free disk space, found before starting or while writing."""


class RegistrationError(AssistantError):
    """A model file was verified and installed in its folder but could not be added to the
    list of installed models (the registry write failed)."""


class SecretStoreError(AssistantError):
    """The system keyring is missing or refused to store or read a secret."""


class DownloadError(AssistantError):
    """Getting a file from the Hugging Face Hub failed; nothing was installed."""


class HubOfflineError(DownloadError):
    """Hub access is switched off (``HF_HUB_OFFLINE``) and the file is not on disk yet."""


class HubUnreachableError(DownloadError):
    """No connection to the Hub could be made at all."""


class RepoNotFoundError(DownloadError):
    pass


class RemoteFileNotFoundError(DownloadError):
    """The repository exists but has no file of that name."""


class HubAccessError(DownloadError):
    """401/403: the repository is gated or private and the token is missing or not allowed."""


class HubServerError(DownloadError):
    """The Hub answered with a server error (5xx) on every attempt."""


class ConnectionDroppedError(DownloadError):
    """The connection kept breaking mid-transfer and the retries ran out."""


class DownloadTimeoutError(DownloadError):
    """The server stopped sending data for longer than the timeout, on every attempt."""


class TLSError(DownloadError):
    """The secure connection could not be set up (certificate or TLS problem)."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes are not the published file; they were deleted."""


class DownloadInProgressError(DownloadError):
    """Another process is downloading the same file right now."""


class ModelIdTakenError(AssistantError):
    """The id asked for a model belongs to another one: installed, or a catalog model's."""


def is_tls_failure(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a failed TLS handshake or certificate
    check (the Hub client and the cloud client both wrap the ``ssl`` error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        text = str(current)
        if "CERTIFICATE_VERIFY_FAILED" in text or "[SSL" in text or "SSL:" in text:
            return True
        current = current.__cause__ or current.__context__
    return False
