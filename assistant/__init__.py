"""Offline Assistant: a private assistant that runs small language models on this computer."""

__version__ = "0.1.0"
APP_NAME = "Offline Assistant"
APP_ID = "offline-assistant"
