"""Drafts for exact speculative decoding, looked up in the prompt itself.

When an answer copies long spans of its prompt (fix the typos, rewrite, translate in place,
edit this code), the next tokens are often the ones that followed the last few tokens
somewhere earlier. :class:`PromptLookup` proposes them; the engine evaluates the sampled token
and the drafts in one batch, then samples each position in turn from the model's own
distribution and keeps drafts only while they equal what was sampled. Every token is therefore
drawn exactly as plain decoding would draw it (same distribution, same sampler calls in the
same order, so even the same seed gives the same text); the drafts only decide how many
positions one batch evaluates. At temperature 0 the output is the plain greedy output, as
exactly as the engine reproduces itself anyway: llama.cpp's CPU kernels round a batch of several
tokens slightly differently from a single one (as they do a prompt read in two parts, which
every reuse of the context does), so at a near tie between two tokens (logits within about
0.01) either may come out.

Drafts cost time when they miss: evaluating a batch of several tokens costs more than one (on
a laptop CPU with a small model, each extra token of a batch costs about half a token's decode).
So the draft length adapts (longer after drafts that were all taken, shorter after misses), and
after a round that missed entirely drafting pauses for a while, twice as long after each
further miss: when drafts are rarely accepted, the engine rarely tries them.
"""

from __future__ import annotations

from collections.abc import Sequence

NGRAM_SIZES = (3, 2, 1)
"""Longest first. A single token often matches by chance in a chat; in a rewrite it is what
finds the way back to the source after a corrected word."""
MAX_DRAFT = 12
FIRST_DRAFT = 4
MAX_PAUSE = 32
"""The longest pause (in tokens) after rounds that missed entirely."""


class PromptLookup:
    """An index of the n-grams of the prompt and the answer so far, and the drafts it offers."""

    def __init__(self, prompt: Sequence[int], *, max_draft: int = MAX_DRAFT) -> None:
        self.max_draft = max_draft
        self.length = min(FIRST_DRAFT, max_draft)
        self.drafted = 0
        self.accepted = 0
        self._misses = 0  # rounds in a row that missed entirely
        self._pause = 0  # tokens to go before drafting again
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
        drafting pauses."""
        if self._pause > 0:
            self._pause -= 1
            return []
        if limit <= 0:
            return []
        history = self._history
        for size in NGRAM_SIZES:
            if len(history) < size:
                continue
            start = self._follows.get(tuple(history[-size:]))
            if start is not None and start < len(history):
                draft = history[start : start + min(limit, self.length)]
                self.drafted += len(draft)
                return draft
        return []

    def record(self, accepted: int, drafted: int) -> None:
        """Settle a round: ``accepted`` of its ``drafted`` tokens were taken."""
        self.accepted += accepted
        if accepted == drafted:
            self.length = min(self.max_draft, 2 * self.length)
            self._misses = 0
        elif accepted == 0:
            self.length = max(1, self.length // 2)
            self._misses += 1
            self._pause = min(MAX_PAUSE, 2**self._misses)
        else:
            self.length = max(1, accepted + 1)
            self._misses = 0

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None
