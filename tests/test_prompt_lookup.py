"""Drafts looked up in the prompt (``assistant.engine.prompt_lookup``), token by token.

Pure Python: each test feeds a prompt and an answer as token ids and checks exactly what the
lookup expects next, what it proposes, how long its drafts are and what it has counted. Tokens
are small integers; a "source" of distinct ones stands for a paragraph being rewritten.
"""

from __future__ import annotations

import pytest

from assistant.engine.prompt_lookup import DECAY, PRIOR, PromptLookup

SOURCE = list(range(10, 22))  # a paragraph of distinct tokens: 10, 11, ..., 21
FREE = 0.0  # a batch costs no more than one token: every draft pays, as long as it can be


def _follow(lookup: PromptLookup, tokens: list[int]) -> None:
    for token in tokens:
        lookup.push(token)


def _held(*outcomes: bool) -> float:
    """What ``expected`` shows for one run length after these predictions, oldest first."""
    hits, trials = PRIOR[0] * PRIOR[1], PRIOR[1]
    for held in outcomes:
        hits, trials = hits * DECAY + held, trials * DECAY + 1.0
    return hits / trials


def test_a_fresh_lookup_has_counted_nothing_and_proposes_nothing() -> None:
    lookup = PromptLookup(SOURCE, batch_cost=FREE)
    assert (lookup.drafted, lookup.accepted, lookup.foreseen) == (0, 0, 0)
    assert lookup.acceptance is None
    assert lookup.expected == [PRIOR[0]] * 4
    assert lookup.propose(4) == []  # no answer token yet: no place in the source
    assert lookup.drafted == 0


def test_drafting_with_nothing_learned_yet_follows_the_prior() -> None:
    lookup = PromptLookup(SOURCE, batch_cost=0.1)
    # Each further draft holds with chance 1/2: 1.5 tokens for 1.1, 1.75 for 1.2, 1.875 for 1.3.
    assert lookup.draft_length(16) == 2
    assert lookup.draft_length(1) == 1
    assert lookup.draft_length(0) == 0
    lookup.batch_cost = 0.5  # 1.5 tokens for the price of 1.5: no better than plain decoding
    assert lookup.draft_length(16) == 0


def test_a_copied_answer_is_foreseen_and_proposed_token_by_token() -> None:
    lookup = PromptLookup(SOURCE, batch_cost=FREE)
    lookup.push(10)  # the first answer token finds its place: after the 10 of the source
    assert lookup.foreseen == 0
    assert lookup.propose(3) == [11, 12, 13]
    _follow(lookup, [11, 12, 13])
    assert lookup.foreseen == 3
    assert lookup.propose(2) == [14, 15]
    assert lookup.drafted == 5
    # Each prediction that held counts under the run it extended: after 0, 1 and 2 hits.
    assert lookup.expected == pytest.approx(
        [_held(True), _held(True), _held(True), PRIOR[0]], abs=1e-12
    )


def test_drafts_stop_at_the_limit_at_max_draft_and_at_the_end_of_the_text() -> None:
    lookup = PromptLookup(SOURCE, batch_cost=FREE, max_draft=3)
    lookup.push(10)
    assert lookup.propose(2) == [11, 12]
    assert lookup.propose(16) == [11, 12, 13]  # max_draft
    assert lookup.drafted == 5

    short = PromptLookup([1, 2, 3, 4], batch_cost=FREE)
    _follow(short, [1, 2, 3, 4])  # the answer repeats the prompt: next, its own first token
    assert short.propose(16) == [1, 2, 3, 4]  # all there is after the pointer
    assert short.drafted == 4


def test_an_answer_repeating_itself_is_followed_into_its_own_text() -> None:
    lookup = PromptLookup([1, 2, 3, 4], batch_cost=FREE)
    _follow(lookup, [1, 2, 3, 4, 1])
    # The pointer now walks the answer's own copy: tokens the answer itself wrote.
    assert lookup.propose(3) == [2, 3, 4]
    _follow(lookup, [2, 3, 4])
    assert lookup.foreseen == 7


def test_accepted_drafts_are_added_up() -> None:
    lookup = PromptLookup(SOURCE, batch_cost=FREE)
    lookup.push(10)
    assert len(lookup.propose(4)) == 4
    lookup.record(3, 4)
    assert len(lookup.propose(2)) == 2
    lookup.record(2, 2)
    assert (lookup.accepted, lookup.drafted) == (5, 6)
    assert lookup.acceptance == 5 / 6


def test_a_short_history_anchors_on_a_single_token() -> None:
    lookup = PromptLookup([7, 8], batch_cost=FREE)
    lookup.push(7)  # three tokens in all: no 4-gram fits, the 1-gram 7 occurred before
    assert lookup.propose(1) == [8]
    lookup.push(8)
    assert lookup.foreseen == 1


def test_the_first_occurrence_ahead_of_the_place_wins() -> None:
    # "1 2" occurs twice; with no miss yet the pointer takes the first.
    lookup = PromptLookup([1, 2, 9, 1, 2, 8], batch_cost=FREE)
    _follow(lookup, [1, 2])
    assert lookup.propose(1) == [9]
    lookup.push(9)
    assert lookup.foreseen == 2


# A source in which the changed word also occurs later, first before another word (where the
# lookup looks first, and misses), then before each source word: an n-gram lookup alone would
# jump there; the pointer resumes in place.
@pytest.mark.parametrize(
    ("answer", "proposed"),
    [
        ([10, 11, 12, 99, 13], [14, 15]),  # 99 inserted before 13
        ([10, 11, 12, 99, 14], [15, 16]),  # 99 in place of 13
        ([10, 11, 12, 99, 15], [16, 17]),  # 99 in place of 13 and 14
    ],
    ids=["inserted", "replaced", "replaced-two"],
)
def test_after_a_changed_word_the_source_resumes_where_it_was(
    answer: list[int], proposed: list[int]
) -> None:
    source = [*SOURCE, 99, 40, 30, 99, 13, 31, 99, 14, 32, 99, 15, 33, 34]
    lookup = PromptLookup(source, batch_cost=FREE)
    _follow(lookup, answer[:4])
    assert lookup.foreseen == 2
    lookup.push(answer[4])
    assert lookup.foreseen == 2  # 99 40 was expected; resuming is not a prediction that held
    assert lookup.propose(2) == proposed
    lookup.push(proposed[0])
    assert lookup.foreseen == 3
    # Hits after 0 and 1 in a row (11, 12), a miss after 2 (99), a miss after 0 (40 was
    # expected); the run counts from 1 after resuming, so the last hit is one after 1.
    assert lookup.expected == pytest.approx(
        [_held(True, False), _held(True, True), _held(False), PRIOR[0]], abs=1e-12
    )


def test_a_miss_near_the_end_of_the_text_does_not_resume_on_itself() -> None:
    lookup = PromptLookup([7, 8], batch_cost=FREE)
    lookup.push(7)  # the pointer expects 8, the second-to-last token of the history
    _follow(lookup, [50, 50])  # a miss, then the missed token again
    lookup.push(50)
    # 50 50 50: anchored afresh after the second 50, so the hit counts as one after none.
    assert lookup.foreseen == 1
    assert lookup.expected == pytest.approx(
        [_held(False, True), PRIOR[0], PRIOR[0], PRIOR[0]], abs=1e-12
    )


def test_draft_length_weighs_each_run_length_apart() -> None:
    source = list(range(100, 140))
    lookup = PromptLookup(source, batch_cost=0.3)
    _follow(lookup, source[:20])  # a long copy: predictions after 3+ hits held 16 times
    lookup.push(7)  # ... then one missed, and nothing leads on from 7
    three_plus = _held(*[True] * 16, False)
    assert lookup.expected == pytest.approx(
        [_held(True), _held(True), _held(True), three_plus], abs=1e-12
    )
    # A draft starts again at run 0: the chances are 0.67, 0.67, 0.67, then 0.89 each.
    lengths = {}
    for cost in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
        lookup.batch_cost = cost
        lengths[cost] = lookup.draft_length(16)
    assert lengths == {0.05: 10, 0.1: 6, 0.2: 2, 0.3: 2, 0.4: 1, 0.5: 1, 0.7: 0}
