"""Turning a list of chat messages into a stream of text.

Front ends talk to a ``ChatProvider``; ``LocalEngine`` (llama.cpp) is one, a cloud provider is
another. Import ``LocalEngine`` from ``assistant.engine.local`` so that modules needing only the
types do not pay for loading llama.cpp.
"""

from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    ChatProvider,
    Generation,
    GenerationSettings,
    GenerationStats,
    OverflowPolicy,
    ProviderKind,
    StopReason,
)

__all__ = [
    "CancelToken",
    "ChatMessage",
    "ChatProvider",
    "Generation",
    "GenerationSettings",
    "GenerationStats",
    "OverflowPolicy",
    "ProviderKind",
    "StopReason",
]
