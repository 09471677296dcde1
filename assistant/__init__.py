"""Offline Assistant: a private assistant that runs small language models on this computer.

This package's own import is kept to ``os``: ``offline-assistant --quick-ask`` hands its
command to a running app after importing little more than this (``assistant.ipc``).
"""

import os

__version__ = "0.1.0"
APP_NAME = "Offline Assistant"
APP_ID = "offline-assistant"

# huggingface_hub (1.x/2.x) reads these when imported. HF_HUB_DISABLE_TELEMETRY also stops its
# lookup of /api/agent-harnesses, made to describe the caller in the user agent;
# DO_NOT_TRACK is the cross-tool opt-out (donottrack.sh); HF_HUB_DISABLE_UPDATE_CHECK stops the
# PyPI version check; HF_HUB_DISABLE_IMPLICIT_TOKEN keeps a saved login token from being sent
# with requests the app did not give it to (the app passes its token explicitly).
PRIVATE_ENVIRONMENT = {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


def private_environment() -> None:
    """Switch off third-party telemetry and lookups; a value the user set is kept."""
    for name, value in PRIVATE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


# Before anything can import huggingface_hub, which reads these once, at import.
private_environment()
