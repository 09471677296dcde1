"""Drafts for exact speculative decoding, looked up in the prompt itself.

When an answer copies long spans of its prompt (fix the typos, rewrite, translate in place,
edit this code), the next tokens are often the ones that followed the last few tokens
somewhere earlier. :class:`PromptLookup` proposes them; the engine evaluates the sampled token
and the drafts in one batch, then samples each position in turn from the model's own
distribution and keeps drafts only while they equal what was sampled. Every token is therefore
drawn exactly as plain decoding would draw it (same distribution, same sampler calls in the
same order, so even the same seed gives the same text); the drafts only decide how many
positions one batch evaluates. At temperature 0 the output is the plain greedy output.

Drafts that are rarely accepted cost time (a batch of several tokens is slower than one), so
:class:`PromptLookup` turns itself off for the rest of an answer when few are accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

NGRAM_SIZES = (3, 2, 1)
"""Longest first. A single token often matches by chance in a chat; in a rewrite it is what
finds the way back to the source after a corrected word."""
MAX_DRAFT = 8
WARMUP_DRAFTED = 32
"""Judge the acceptance rate only after this many drafted tokens."""
MIN_ACCEPTANCE = 0.3


class PromptLookup:
    """An index of the n-grams of the prompt and the answer so far, and the drafts it offers."""

    def __init__(self, prompt: Sequence[int], *, max_draft: int = MAX_DRAFT) -> None:
        self.max_draft = max_draft
        self.enabled = True
        self.drafted = 0
        self.accepted = 0
        self._history: list[int] = []
        # n-gram -> where its first occurrence was followed (an index into the history).
        self._follows: dict[tuple[int, ...], int] = {}
        for token in prompt:
            self.push(token)

    def push(self, token: int) -> None:
        """Record the next token of the answer (or of the prompt, at the start)."""
        self._history.append(token)
        end = len(self._history)
        for size in NGRAM_SIZES:
            if end >= size:
                self._follows.setdefault(tuple(self._history[end - size :]), end)

    def propose(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens likely to follow the history; empty when there is no match or
        drafting turned itself off."""
        if not self.enabled or limit <= 0:
            return []
        history = self._history
        for size in NGRAM_SIZES:
            if len(history) < size:
                continue
            start = self._follows.get(tuple(history[-size:]))
            if start is not None and start < len(history):
                draft = history[start : start + min(limit, self.max_draft)]
                self.drafted += len(draft)
                return draft
        return []

    def record(self, accepted: int) -> None:
        """Count the drafts of a settled round that were accepted; turn drafting off when too
        few of them pass."""
        self.accepted += accepted
        if self.drafted >= WARMUP_DRAFTED and self.accepted < MIN_ACCEPTANCE * self.drafted:
            self.enabled = False

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None
