"""Offline Assistant: a private assistant that runs small language models on this computer."""

from assistant.logs import private_environment

__version__ = "0.1.0"
APP_NAME = "Offline Assistant"
APP_ID = "offline-assistant"

# Before anything can import huggingface_hub, which reads these once, at import.
private_environment()
