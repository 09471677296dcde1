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

import keyring
import keyring.errors

from assistant import APP_ID
from assistant.errors import SecretStoreError
from assistant.paths import hf_home

log = logging.getLogger(__name__)

SERVICE = APP_ID
HF_TOKEN_NAME = "huggingface-token"


def get_secret(name: str) -> str | None:
    """The stored secret, or ``None`` when there is none or no keyring to ask."""
    try:
        value = keyring.get_password(SERVICE, name)
    except keyring.errors.KeyringError as exc:
        log.info("No secret %r read from the keyring: %s", name, exc)
        return None
    return value or None


def set_secret(name: str, value: str) -> None:
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
