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

How drafts are found. A rewrite walks its source in order, so the lookup keeps a *pointer*
into the history (prompt and answer so far): the position of the token it expects next. Each
answer token that equals the expected one moves the pointer on, whether or not it was drafted.
After a miss (a corrected word) the pointer is anchored again on the longest n-gram ending the
history that occurred before, preferring the occurrence nearest after where the pointer was:
the answer usually resumes a little further on in the source.

How long drafts are. The pointer's predictions are checked against every answer token, drafted
or not, so the lookup knows, for free, how often a prediction holds after 0, 1, 2 or 3+ hits in
a row. A batch of n tokens costs ``a + b·n`` single-token decodes (the engine measures it as it
goes: on a laptop CPU with a small model, b is large; on a GPU or a busy CPU, small). A draft
of k tokens is worth (1 + expected accepted) / cost(k + 1) tokens per decode; the lookup drafts
the k that maximises it, and nothing when no k beats plain decoding. When the answer stops
copying, predictions miss, the expected acceptance drops and drafting stops by itself — and
resumes as soon as predictions hold again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

NGRAM_SIZES = (4, 3, 2, 1)
"""Longest first. A single token often matches by chance in a chat; in a rewrite it is what
finds the way back to the source after a corrected word."""
MAX_DRAFT = 16
RUNS = 4
"""Predictions are counted apart after 0, 1, 2 and 3 or more hits in a row."""
DECAY = 0.97
"""Weight kept by older observations at each new one: about the last 30 count."""
PRIOR = (0.5, 2.0)
"""Each run length starts as if 1 of 2 predictions had held."""
BATCH_COST = 0.6
"""Extra cost of each further token of a batch, in single-token decodes, until measured
(SmolLM2-135M Q4_1 on a 2-core laptop-class CPU)."""


class PromptLookup:
    """A pointer into the prompt and the answer so far, and the drafts it offers."""

    def __init__(
        self,
        prompt: Sequence[int],
        *,
        max_draft: int = MAX_DRAFT,
        batch_cost: float = BATCH_COST,
    ) -> None:
        self.max_draft = max_draft
        self.batch_cost = batch_cost
        """What each token of a batch beyond the first adds, in single-token decodes."""
        self.drafted = 0
        self.accepted = 0
        self.foreseen = 0
        """Answer tokens the pointer expected, drafted or not: what drafts could take at best."""
        self._history: list[int] = []
        # n-gram -> every position that followed it (indices into the history), in order.
        self._follows: dict[tuple[int, ...], list[int]] = {}
        self._pointer: int | None = None  # where the expected next token sits in the history
        self._hint = 0  # where the pointer was when it last missed: resume near there
        self._run = 0  # predictions that held in a row since the pointer was anchored
        self._spares: list[int] = []  # where the source may resume after a miss
        self._hits = [PRIOR[0] * PRIOR[1]] * RUNS
        self._trials = [PRIOR[1]] * RUNS
        for token in prompt:
            self._append(token)

    # --- following the answer ------------------------------------------------------------

    def push(self, token: int) -> None:
        """Record the next token of the answer, and whether the pointer expected it."""
        history = self._history
        pointer = self._pointer
        spares, self._spares = self._spares, []
        if pointer is not None:
            run = min(self._run, RUNS - 1)
            hit = history[pointer] == token
            self._hits[run] = self._hits[run] * DECAY + hit
            self._trials[run] = self._trials[run] * DECAY + 1.0
            if hit:
                self.foreseen += 1
                self._pointer = pointer + 1
                self._run += 1
                self._append(token)
                if self._pointer >= len(history):
                    self._anchor()
                return
        # Where the source resumes after a changed word: the first guess that held.
        resumed = next((s for s in spares if history[s] == token), None)
        self._pointer = None
        if resumed is not None:
            self._pointer = resumed + 1
            self._run = 1
        elif pointer is not None:
            # A fresh miss: the answer inserted a token before the expected one, replaced it,
            # or replaced two; the next token tells which.
            self._hint = pointer
            self._spares = [s for s in (pointer, pointer + 1, pointer + 2) if s < len(history)]
        self._append(token)
        if self._pointer is None or self._pointer >= len(history):
            self._anchor()

    def _append(self, token: int) -> None:
        history = self._history
        history.append(token)
        end = len(history)
        for size in NGRAM_SIZES:
            if end >= size:
                key = tuple(history[end - size :])
                found = self._follows.get(key)
                if found is None:
                    self._follows[key] = [end]
                else:
                    found.append(end)

    def _anchor(self) -> None:
        """Point after the longest n-gram ending the history that occurred before, nearest
        after the hint."""
        history = self._history
        end = len(history)
        self._pointer = None
        self._run = 0
        for size in NGRAM_SIZES:
            if end < size:
                continue
            found = self._follows.get(tuple(history[end - size :]))
            if found is None or len(found) < 2:  # only the history's own end
                continue
            # The occurrences before the history's own end (the last entry), nearest at or
            # after the hint, else the last one before it.
            at = bisect_left(found, self._hint, 0, len(found) - 1)
            self._pointer = found[min(at, len(found) - 2)]
            return

    # --- drafting ------------------------------------------------------------------------

    def propose(self, limit: int) -> list[int]:
        """The tokens the pointer expects next, as many as are expected to pay (at most
        ``limit``); empty when there is no pointer or drafting would not pay."""
        pointer = self._pointer
        if pointer is None or limit <= 0:
            return []
        available = len(self._history) - pointer
        count = self.draft_length(min(limit, self.max_draft, available))
        if count == 0:
            return []
        self.drafted += count
        return self._history[pointer : pointer + count]

    def draft_length(self, most: int) -> int:
        """How many tokens to draft (at most ``most``): the count that gives the most tokens
        per unit of decoding time, 0 when plain decoding gives more."""
        b = self.batch_cost
        run = self._run
        hits, trials = self._hits, self._trials
        expected = 1.0  # tokens one decode yields: the sampled one, plus accepted drafts
        chance = 1.0
        best_rate, best = 1.0, 0  # plain decoding: one token per single-token decode
        for k in range(1, most + 1):
            slot = min(run + k - 1, RUNS - 1)
            chance *= hits[slot] / trials[slot]
            expected += chance
            rate = expected / (1.0 + b * k)
            if rate > best_rate:
                best_rate, best = rate, k
        return best

    def record(self, accepted: int, drafted: int) -> None:
        """Settle a round: ``accepted`` of its ``drafted`` tokens were taken."""
        self.accepted += accepted

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def expected(self) -> list[float]:
        """How often a prediction holds after 0, 1, 2, 3+ hits in a row (for diagnostics)."""
        return [h / t for h, t in zip(self._hits, self._trials, strict=True)]
