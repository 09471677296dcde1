"""Talking to models: saved conversations (SQLite and its named migrations) and one exchange
of a conversation, saved as it streams.

Nothing here imports ``assistant.models``: a conversation names its model, it does not fetch one.
"""
