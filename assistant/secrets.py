"""Secrets (the Hugging Face token, API keys) live in the OS keyring, never in a file.

Every secret is stored under the service name ``offline-assistant`` with its own user name
(``huggingface-token`` for the Hub, ``local-api-token`` for the local API). Reading never fails
loudly: a machine without a keyring simply has no stored secrets. Writing to a missing or
locked keyring raises ``SecretStoreError`` with a sentence that says what to do instead.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from assistant import APP_ID
from assistant.errors import SecretStoreError
from assistant.paths import hf_home

log = logging.getLogger(__name__)

SERVICE = APP_ID
HF_TOKEN_NAME = "huggingface-token"


def get_secret(name: str) -> str | None:
    """The stored secret, or ``None`` when there is none or no keyring to ask."""
    import keyring  # here, not at the top: it costs the app's start ~40 ms
    import keyring.errors

    try:
        value = keyring.get_password(SERVICE, name)
    except keyring.errors.KeyringError as exc:
        log.info("No secret %r read from the keyring: %s", name, exc)
        return None
    return value or None


def set_secret(name: str, value: str) -> None:
    import keyring
    import keyring.errors

    if not value:
        raise ValueError("an empty secret cannot be stored")
    try:
        keyring.set_password(SERVICE, name, value)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreError(
            f"The system keyring could not store the secret ({exc}).",
            hint="Unlock or install a keyring (GNOME Keyring, KWallet, macOS Keychain, "
            "Windows Credential Manager), or set the HF_TOKEN environment variable instead.",
        ) from exc


def delete_secret(name: str) -> bool:
    """Forget a secret; ``False`` when there was none."""
    import keyring
    import keyring.errors

    try:
        keyring.delete_password(SERVICE, name)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise SecretStoreError(
            f"The system keyring could not delete the secret ({exc}).",
            hint="Unlock the keyring and try again.",
        ) from exc
    return True


# --- the Hugging Face token ------------------------------------------------------------------


def get_hf_token() -> str | None:
    """The token stored by this app, else the one ``huggingface-hub`` would use.

    The environment and the Hub CLI's token file are read at call time (not at import time as
    ``huggingface_hub.constants`` does), so ``HF_HOME`` set later still counts.
    """
    found = _find_hf_token()
    return found[0] if found is not None else None


def hf_token_source() -> str | None:
    """Where the token in use comes from, for display: ``keyring``, ``HF_TOKEN`` or a file."""
    found = _find_hf_token()
    return found[1] if found is not None else None


def set_hf_token(token: str) -> None:
    token = token.strip()
    if not token:
        raise ValueError("the token is empty")
    set_secret(HF_TOKEN_NAME, token)


def clear_hf_token() -> bool:
    return delete_secret(HF_TOKEN_NAME)


def _find_hf_token() -> tuple[str, str] | None:
    """The token in use and where it comes from, asking each source in turn and once."""
    stored = get_secret(HF_TOKEN_NAME)
    if stored:
        return stored, "keyring"
    from_env = os.environ.get("HF_TOKEN", "").strip()
    if from_env:
        return from_env, "HF_TOKEN"
    path = _hub_cli_token_path()
    try:
        from_file = path.read_text(encoding="utf-8").strip()  # saved by `hf auth login`
    except OSError:
        return None
    return (from_file, str(path)) if from_file else None


def _hub_cli_token_path() -> Path:
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    return hf_home() / "token"


# --- the local API's token -------------------------------------------------------------------

API_TOKEN_NAME = "local-api-token"


def get_api_token() -> str | None:
    """The token other programs send to the local API (``Authorization: Bearer``), if made."""
    return get_secret(API_TOKEN_NAME)


def ensure_api_token() -> str:
    """The local API's token, made (random, 256 bits) and stored on first use.

    Raises ``SecretStoreError`` when there is no keyring to keep a new one in."""
    token = get_api_token()
    if token is None:
        token = new_api_token()
    return token


def new_api_token() -> str:
    """Replace the local API's token with a new random one (programs using the old one stop
    working) and return it."""
    token = "oa-" + secrets.token_urlsafe(32)
    set_secret(API_TOKEN_NAME, token)
    return token


# --- cloud API keys --------------------------------------------------------------------------
# One keyring entry per cloud provider ("cloud-key:NAME"). Where no keyring works, a key may be
# held in this process's memory for the session only: it is never written anywhere.

_CLOUD_PREFIX = "cloud-key:"
_session_keys: dict[str, str] = {}
_seen: set[str] = set()  # every secret this process handled, so scrub() can hide it


def keyring_available() -> bool:
    """Whether a real keyring is there to store secrets (not keyring's "fail" backend, which
    headless sessions without a Secret Service get)."""
    import keyring
    from keyring.backends import fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    chained = getattr(backend, "backends", None)  # the chainer: usable if any backend is
    return chained is None or any(not isinstance(b, fail.Keyring) for b in chained)


def cloud_key_env(provider: str) -> str:
    """The environment variable that may hold the key (for headless machines with no
    keyring, the way ``HF_TOKEN`` does for the Hub): set by the user, never written by us."""
    return "OFFLINE_ASSISTANT_KEY_" + "".join(c if c.isalnum() else "_" for c in provider.upper())


def get_cloud_key(provider: str) -> str | None:
    """The key of cloud provider ``provider``: the one held for this session, else the
    keyring's, else the environment's."""
    key = (
        _session_keys.get(provider)
        or get_secret(_CLOUD_PREFIX + provider)
        or os.environ.get(cloud_key_env(provider), "").strip()
        or None
    )
    if key:
        _seen.add(key)
    return key


def cloud_key_source(provider: str) -> str | None:
    """``"session"``, ``"keyring"``, the environment variable's name, or ``None``: where the
    provider's key comes from."""
    if provider in _session_keys:
        return "session"
    if get_secret(_CLOUD_PREFIX + provider):
        return "keyring"
    return cloud_key_env(provider) if os.environ.get(cloud_key_env(provider)) else None


def set_cloud_key(provider: str, key: str) -> None:
    """Store ``key`` in the keyring; ``SecretStoreError`` when there is no usable keyring (the
    front end may then offer :func:`hold_cloud_key_for_session`)."""
    key = key.strip()
    if not key:
        raise ValueError("the key is empty")
    _seen.add(key)
    if not keyring_available():
        raise SecretStoreError(
            "There is no system keyring to keep the key in.",
            hint="The key can be held in memory until the app quits, and asked for again "
            "next time; it is never saved to a file.",
        )
    import keyring
    import keyring.errors

    try:
        keyring.set_password(SERVICE, _CLOUD_PREFIX + provider, key)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreError(
            "The system keyring could not store the key.",
            hint="Unlock the keyring and try again, or keep the key in memory for this "
            "session only.",
        ) from exc
    _session_keys.pop(provider, None)


def hold_cloud_key_for_session(provider: str, key: str) -> None:
    """Keep ``key`` in this process's memory only, until it ends."""
    key = key.strip()
    if not key:
        raise ValueError("the key is empty")
    _seen.add(key)
    _session_keys[provider] = key


def delete_cloud_key(provider: str) -> bool:
    """Forget the provider's key, in the keyring and in memory; ``False`` when there was none."""
    held = _session_keys.pop(provider, None) is not None
    try:
        stored = delete_secret(_CLOUD_PREFIX + provider)
    except SecretStoreError:
        if not held:
            raise
        stored = False
    return held or stored


def scrub(text: str) -> str:
    """``text`` with every secret this process has handled replaced by ``[hidden]``: for bug
    reports and anything else that may leave the app."""
    for secret in sorted(_seen, key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, "[hidden]")
    return text
