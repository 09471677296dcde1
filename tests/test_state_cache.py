"""The saved model states' own rules, on plain bytes and real files (no model).

``tests/test_model_memory.py`` shows the engine using the cache; this file pins down each rule
of :mod:`assistant.engine.state_cache` at its edges: which state a lookup picks, what a new
state makes redundant, what the budgets keep, the file format and every way a file can be
damaged, and the counts shared between processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from assistant.engine import state_cache as sc
from assistant.engine.state_cache import (
    MAGIC,
    STATS_FILE,
    SUFFIX,
    CacheStats,
    SavedState,
    StateCache,
    common_prefix,
    default_memory_budget,
)
from assistant.models.hardware import GIB, MIB, Hardware


def _tokens(count: int, start: int = 0) -> list[int]:
    return list(range(start, start + count))


def _memory(budget: int = 1 << 20, min_tokens: int = 4) -> StateCache:
    return StateCache(None, memory_budget=budget, min_tokens=min_tokens)


def _disk(folder: Path, budget: int = 1 << 20, memory: int = 0) -> StateCache:
    return StateCache(folder, memory_budget=memory, disk_budget=budget, min_tokens=4)


def _file_of(cache: StateCache, tokens: list[int], fingerprint: str = "m") -> Path:
    state = SavedState(fingerprint, np.array(tokens, dtype=np.int32), 0)
    assert cache.folder is not None
    return cache.folder / (state.key + SUFFIX)


def _ram(total_gib: float, free_gib: float) -> Hardware:
    return Hardware(int(total_gib * GIB), int(free_gib * GIB), 4, 8, False)


# --- small parts ------------------------------------------------------------------------------


def test_the_automatic_memory_budget_is_a_sixteenth_of_the_ram_within_bounds() -> None:
    assert default_memory_budget(_ram(16, 12)) == GIB  # 1/16 of 16 GiB
    assert default_memory_budget(_ram(16, 2)) == GIB // 2  # a quarter of what is free
    assert default_memory_budget(_ram(0.5, 0.5)) == 64 * MIB  # never below 64 MiB
    assert default_memory_budget(_ram(256, 200)) == 4 * GIB  # never above 4 GiB


def test_common_prefix_counts_leading_tokens_only() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix([9, 2, 3], [1, 2, 3]) == 0
    assert common_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert common_prefix([], []) == 0


def test_a_states_key_names_the_model_and_the_exact_tokens() -> None:
    tokens = np.array([5, 6, 7], dtype=np.int32)
    state = SavedState("0123456789abcdefXYZ", tokens, 3)
    digest = hashlib.sha256(struct.pack("<3i", 5, 6, 7)).hexdigest()
    assert state.key == f"0123456789abcdef-{digest[:40]}"


def test_the_hit_rate_is_hits_over_lookups_and_none_before_any() -> None:
    def stats(hits: int, misses: int) -> CacheStats:
        return CacheStats(0, 0, 0, 0, 0, 0, hits, misses, 0)

    assert stats(0, 0).hit_rate is None
    assert stats(3, 1).hit_rate == 0.75
    assert stats(0, 2).hit_rate == 0.0


# --- lookups ----------------------------------------------------------------------------------


def test_a_prefix_shorter_than_the_minimum_is_not_used_and_the_minimum_is() -> None:
    cache = _memory(min_tokens=8)
    cache.put("m", _tokens(7), bytearray(7))  # too short to keep
    assert cache.stats().memory_states == 0
    cache.put("m", _tokens(8), bytearray(8))
    assert cache.stats().memory_states == 1
    assert cache.find("m", [*_tokens(7), 99, 99], better_than=0) is None  # 7 usable < 8
    match = cache.find("m", [*_tokens(8), 99], better_than=0)
    assert match is not None and match.usable == 8


def test_a_prefix_only_as_long_as_what_the_context_holds_is_no_gain() -> None:
    cache = _memory()
    cache.put("m", _tokens(20), bytearray(20))
    assert cache.find("m", _tokens(30), better_than=20) is None
    match = cache.find("m", _tokens(30), better_than=19)
    assert match is not None and match.usable == 20


def test_a_state_is_used_for_a_sixteenth_of_its_tokens_and_not_less() -> None:
    cache = _memory()
    cache.put("m", _tokens(160), bytearray(160))
    match = cache.find("m", [*_tokens(10), 999, 999], better_than=0)  # 10 * 16 == 160
    assert match is not None and match.usable == 10
    assert cache.find("m", [*_tokens(9), 999, 999], better_than=0) is None


def test_of_two_equal_prefixes_the_smaller_state_is_restored() -> None:
    cache = _memory()
    cache.put("m", [*_tokens(40), 7, 7, 7, 7], bytearray(b"L" * 400))
    cache.put("m", [*_tokens(40), 8, 8, 8, 8], bytearray(b"s" * 300))
    match = cache.find("m", [*_tokens(40), 9, 9], better_than=0)
    assert match is not None and match.usable == 40 and bytes(match.data[:1]) == b"s"
    # A longer prefix beats a smaller size.
    match = cache.find("m", [*_tokens(40), 7, 7, 9], better_than=0)
    assert match is not None and match.usable == 42 and bytes(match.data[:1]) == b"L"


def test_hits_misses_and_restored_tokens_are_counted() -> None:
    cache = _memory()
    cache.put("m", _tokens(20), bytearray(20))
    assert cache.find("m", _tokens(30), better_than=0) is not None  # 20 restored
    assert cache.find("m", _tokens(12), better_than=0) is not None  # 11 restored
    assert cache.find("other", _tokens(30), better_than=0) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.tokens_restored) == (2, 1, 31)
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_a_damaged_file_gives_way_to_the_next_best_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    writer = _disk(folder)
    writer.put("m", _tokens(30), bytearray(b"a" * 30))
    writer.put("m", [*_tokens(20), 77, 77, 77], bytearray(b"b" * 23))  # kept: not a prefix
    assert writer.flush()
    longest = _file_of(writer, _tokens(30))
    raw = bytearray(longest.read_bytes())
    raw[-1] ^= 0xFF
    longest.write_bytes(raw)

    reader = _disk(folder, memory=1 << 20)
    with caplog.at_level(logging.WARNING, logger="assistant.engine.state_cache"):
        match = reader.find("m", _tokens(40), better_than=0)
    assert match is not None and match.usable == 20 and bytes(match.data) == b"b" * 23
    assert not longest.exists()
    assert f"Discarding saved model state {longest.stem} (30 tokens)." in caplog.messages
    stats = reader.stats()
    assert (stats.hits, stats.misses, stats.tokens_restored) == (1, 0, 20)


def test_a_state_read_from_disk_is_kept_in_memory_and_made_newest_on_disk(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "states"
    writer = _disk(folder)
    writer.put("m", _tokens(10), bytearray(b"x" * 10))
    assert writer.flush()
    path = _file_of(writer, _tokens(10))
    os.utime(path, (1_000_000, 1_000_000))

    reader = _disk(folder, memory=1 << 20)
    assert reader.stats().memory_states == 0
    match = reader.find("m", _tokens(11), better_than=0)
    assert match is not None and bytes(match.data) == b"x" * 10
    assert path.stat().st_mtime > 1_000_000
    stats = reader.stats()
    assert (stats.memory_states, stats.memory_bytes) == (1, 10)
    path.unlink()  # served from memory from now on
    match = reader.find("m", _tokens(11), better_than=0)
    assert match is not None and bytes(match.data) == b"x" * 10


def test_a_state_known_only_by_its_index_and_gone_is_a_miss(tmp_path: Path) -> None:
    cache = _memory()
    state = SavedState("m", np.array(_tokens(10), dtype=np.int32), 10)  # no data, no file
    assert cache._load(state) is None


# --- saving and the memory budget ---------------------------------------------------------


def test_a_later_turn_makes_a_turn_of_at_least_half_its_length_redundant() -> None:
    cache = _memory()
    cache.put("m", _tokens(50), bytearray(50))  # exactly half of the next: redundant
    cache.put("m", _tokens(49, start=1000), bytearray(49))  # another chat
    cache.put("m", _tokens(100), bytearray(100))
    assert cache.find("m", [*_tokens(50), 5000, 5000], better_than=0) is not None
    assert cache.stats().memory_bytes == 149  # the 50-token state went

    cache = _memory()
    cache.put("m", _tokens(49), bytearray(49))  # under half: a shared preamble, kept
    cache.put("m", _tokens(100), bytearray(100))
    assert cache.stats().memory_bytes == 149


def test_a_longer_state_or_another_models_is_never_redundant() -> None:
    cache = _memory()
    cache.put("m", _tokens(100), bytearray(100))
    cache.put("m", _tokens(60), bytearray(60))  # shorter, but newer: the longer one stays
    cache.put("n", _tokens(100), bytearray(1))  # another model's
    assert cache.stats().memory_states == 3


def test_the_same_tokens_saved_again_replace_the_earlier_bytes() -> None:
    cache = _memory()
    cache.put("m", _tokens(10), bytearray(b"a" * 10))
    cache.put("m", _tokens(10), bytearray(b"b" * 30))
    stats = cache.stats()
    assert (stats.memory_states, stats.memory_bytes) == (1, 30)
    match = cache.find("m", _tokens(11), better_than=0)
    assert match is not None and bytes(match.data[:1]) == b"b"


def test_a_state_as_large_as_the_memory_budget_fits_and_a_larger_one_does_not() -> None:
    cache = _memory(budget=100)
    cache.put("m", _tokens(10), bytearray(100))
    assert cache.stats().memory_bytes == 100
    cache.put("m", _tokens(10, start=50), bytearray(101))
    stats = cache.stats()
    assert (stats.memory_states, stats.memory_bytes) == (1, 100)
    cache.put("m", _tokens(10, start=90), bytearray(60))  # the first one makes room
    assert cache.stats().memory_bytes == 60


def test_a_smaller_memory_budget_evicts_the_least_recently_used_first() -> None:
    cache = _memory(budget=1000)
    for start in (0, 100, 200):
        cache.put("m", _tokens(10, start=start), bytearray(100))
    assert cache.find("m", [*_tokens(10), 1], better_than=0) is not None  # the oldest, used
    cache.set_budgets(memory=200)
    stats = cache.stats()
    assert (stats.memory_states, stats.memory_bytes, stats.memory_budget) == (2, 200, 200)
    assert cache.find("m", [*_tokens(10), 1], better_than=0) is not None
    assert cache.find("m", [*_tokens(10, start=200), 1], better_than=0) is not None
    assert cache.find("m", [*_tokens(10, start=100), 1], better_than=0) is None
    cache.set_budgets(memory=0)
    assert cache.stats().memory_states == 0


def test_without_a_folder_there_is_no_disk_tier() -> None:
    cache = StateCache(None, memory_budget=100, disk_budget=1000)
    cache.set_budgets(disk=5000)
    stats = cache.stats()
    assert (stats.disk_budget, stats.disk_states, stats.disk_bytes) == (0, 0, 0)
    assert cache.flush()  # nothing was ever handed to a writer


# --- the disk tier ----------------------------------------------------------------------------


def test_a_state_file_holds_a_header_the_tokens_and_the_bytes(tmp_path: Path) -> None:
    cache = _disk(tmp_path / "states")
    data = bytearray(range(256)) * 2
    cache.put("fingerprint-of-the-model", _tokens(6, start=40), data)
    assert cache.flush()
    path = _file_of(cache, _tokens(6, start=40), "fingerprint-of-the-model")
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    (length,) = struct.unpack("<I", raw[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    header = json.loads(raw[start : start + length])
    token_bytes = struct.pack("<6i", *_tokens(6, start=40))
    assert header == {
        "fingerprint": "fingerprint-of-the-model",
        "n_tokens": 6,
        "data_len": 512,
        "tokens_crc32": zlib.crc32(token_bytes),
        "data_crc32": zlib.crc32(data),
    }
    assert raw[start + length :] == token_bytes + bytes(data)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no lookups: no counts


def test_a_state_larger_than_the_disk_budget_stays_in_memory_only(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder, budget=10_000, memory=100_000)
    cache.put("m", _tokens(10), bytearray(10_001))
    cache.put("m", _tokens(10, start=50), bytearray(5000))
    cache.put("m", _tokens(10, start=90), bytearray())  # nothing to write
    assert cache.flush()
    assert [p.name for p in folder.glob("*" + SUFFIX)] == [
        _file_of(cache, _tokens(10, start=50)).name
    ]
    stats = cache.stats()
    assert (stats.disk_states, stats.disk_bytes, stats.memory_states) == (1, 5000, 3)


def test_a_state_made_redundant_before_it_was_written_is_never_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder)
    # Hold the writer back while both turns are saved.
    gate = threading.Event()
    original = cache._write

    def held_write(state: SavedState) -> None:
        gate.wait(10)
        original(state)

    cache._write = held_write  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="assistant.engine.state_cache"):
        cache.put("m", _tokens(60), bytearray(60))
        cache.put("m", _tokens(100), bytearray(100))
        gate.set()
        assert cache.flush()
    assert not caplog.messages  # skipped quietly
    assert [p.name for p in folder.glob("*" + SUFFIX)] == [_file_of(cache, _tokens(100)).name]


def test_a_file_already_there_is_not_written_again(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    first = _disk(folder)
    first.put("m", _tokens(10), bytearray(b"a" * 10))
    assert first.flush()
    path = _file_of(first, _tokens(10))
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    second = _disk(folder)
    second.put("m", _tokens(10), bytearray(b"a" * 10))
    assert second.flush()
    assert path.stat().st_mtime_ns == before - 10**9
    assert second.stats().disk_states == 1


def test_the_disk_budget_deletes_the_oldest_files_until_the_rest_fit(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder, budget=10_000)
    sizes = {}
    for n in range(4):
        cache.put("m", _tokens(10, start=100 * n), bytearray(1000))
        assert cache.flush()
        path = _file_of(cache, _tokens(10, start=100 * n))
        os.utime(path, (1_000_000 + n, 1_000_000 + n))  # in the order written
        sizes[n] = path.stat().st_size
    # Room for exactly the two newest files.
    cache.set_budgets(disk=sizes[2] + sizes[3])
    assert cache.flush()
    left = {p.name for p in folder.glob("*" + SUFFIX)}
    assert left == {_file_of(cache, _tokens(10, start=100 * n)).name for n in (2, 3)}
    stats = cache.stats()
    assert (stats.disk_states, stats.disk_bytes, stats.disk_budget) == (
        2,
        2000,
        sizes[2] + sizes[3],
    )


def test_clearing_deletes_states_leftovers_and_counts_and_says_how_much(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder, memory=1 << 20)
    cache.put("m", _tokens(10), bytearray(300))
    assert cache.find("m", _tokens(30), better_than=0) is not None
    assert cache.flush()
    leftover = folder / ".half-written.tmp"
    leftover.write_bytes(b"z" * 7)
    keep = folder / "notes.txt"
    keep.write_text("not ours")
    ours = [p for p in folder.iterdir() if p != keep and not p.name.endswith(".lock")]
    assert {p.suffix for p in ours} == {SUFFIX, ".tmp", ".json"}
    on_disk = sum(p.stat().st_size for p in ours)

    assert cache.clear() == 300 + on_disk
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == ["notes.txt"]
    stats = cache.stats()
    assert (stats.memory_states, stats.memory_bytes, stats.disk_states) == (0, 0, 0)
    assert (stats.hits, stats.misses, stats.tokens_restored) == (0, 0, 0)
    assert cache.find("m", _tokens(30), better_than=0) is None


def test_clearing_a_folder_never_made_frees_only_memory(tmp_path: Path) -> None:
    cache = _disk(tmp_path / "never", budget=0, memory=1 << 20)  # nothing goes to disk
    cache.put("m", _tokens(10), bytearray(40))
    assert cache.clear() == 40
    assert not (tmp_path / "never").exists()


def test_the_folder_is_read_again_for_what_other_processes_did(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    mine = _disk(folder)
    other = _disk(folder)
    other.put("m", _tokens(10), bytearray(b"o" * 50))
    assert other.flush()
    assert mine.stats().disk_states == 1  # written by the other
    _file_of(other, _tokens(10)).unlink()
    assert mine.stats().disk_states == 0  # and deleted by it


def test_leftovers_of_a_dead_writer_go_after_an_hour_and_not_before(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    old = folder / ".a.kvstate.123.tmp"
    young = folder / ".b.kvstate.124.tmp"
    for path in (old, young):
        path.write_bytes(b"half")
    hour_ago = time.time() - 3600 - 60
    os.utime(old, (hour_ago, hour_ago))
    assert _disk(folder).stats().disk_states == 0
    assert not old.exists()
    assert young.exists()


def test_an_unreadable_state_file_is_deleted_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    bad = folder / ("garbage" + SUFFIX)
    bad.write_bytes(b"not a state")
    with caplog.at_level(logging.WARNING, logger="assistant.engine.state_cache"):
        assert _disk(folder).stats().disk_states == 0
    assert f"Discarding unreadable saved model state {bad.name}." in caplog.messages
    assert not bad.exists()


def test_a_folder_that_cannot_be_listed_counts_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("x")
    assert StateCache(path, memory_budget=0).stats().disk_states == 0


# --- damaged files, each way ------------------------------------------------------------------


def _written(tmp_path: Path) -> tuple[Path, bytes]:
    cache = _disk(tmp_path / "states")
    cache.put("m", _tokens(10), bytearray(b"d" * 40))
    assert cache.flush()
    path = _file_of(cache, _tokens(10))
    return path, path.read_bytes()


def _header_end(raw: bytes) -> int:
    (length,) = struct.unpack("<I", raw[len(MAGIC) : len(MAGIC) + 4])
    return len(MAGIC) + 4 + length


def _with_header(raw: bytes, **changes: object) -> bytes:
    start, end = len(MAGIC) + 4, _header_end(raw)
    header = json.loads(raw[start:end])
    header.update(changes)
    encoded = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(encoded)) + encoded + raw[end:]


def _damaged(raw: bytes, how: str) -> bytes:
    end = _header_end(raw)
    if how == "magic":
        return b"X" + raw[1:]
    if how == "no length":
        return MAGIC + b"\x01\x00"
    if how == "huge header":
        return MAGIC + struct.pack("<I", (1 << 16) + 1) + raw[len(MAGIC) + 4 :]
    if how == "header not an object":
        encoded = b"[1, 2]"
        return MAGIC + struct.pack("<I", len(encoded)) + encoded + raw[end:]
    if how == "header not JSON":
        return MAGIC + struct.pack("<I", 3) + b"\xff\xfe{" + raw[end:]
    if how == "tokens cut":
        return raw[: end + 12]
    if how == "token flipped":
        return raw[:end] + bytes([raw[end] ^ 1]) + raw[end + 1 :]
    if how == "bytes cut":
        return raw[:-1]
    if how == "byte added":
        return raw + b"\x00"
    if how == "wrong count":
        return _with_header(raw, n_tokens="ten")
    if how == "no checksum":
        header = json.loads(raw[len(MAGIC) + 4 : end])
        del header["tokens_crc32"]
        encoded = json.dumps(header).encode()
        return MAGIC + struct.pack("<I", len(encoded)) + encoded + raw[end:]
    raise AssertionError(how)


DAMAGE = [
    "magic",
    "no length",
    "huge header",
    "header not an object",
    "header not JSON",
    "tokens cut",
    "token flipped",
    "bytes cut",
    "byte added",
    "wrong count",
    "no checksum",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_index_is_never_listed(tmp_path: Path, how: str) -> None:
    path, raw = _written(tmp_path)
    path.write_bytes(_damaged(raw, how))
    assert sc._read_index(path) is None


def test_an_intact_index_reads_back_what_was_written(tmp_path: Path) -> None:
    path, _raw = _written(tmp_path)
    state = sc._read_index(path)
    assert state is not None
    assert (state.fingerprint, state.size, state.path, state.data) == ("m", 40, path, None)
    assert state.tokens.tolist() == _tokens(10) and state.tokens.dtype == np.int32
    assert sc._read_data(path, state) == bytearray(b"d" * 40)


@pytest.mark.parametrize(
    "how", ["magic", "huge header", "header not an object", "bytes cut", "byte added"]
)
def test_damaged_bytes_are_never_handed_out(tmp_path: Path, how: str) -> None:
    path, raw = _written(tmp_path)
    state = sc._read_index(path)
    assert state is not None
    path.write_bytes(_damaged(raw, how))
    assert sc._read_data(path, state) is None


def test_bytes_whose_checksum_or_length_differ_are_never_handed_out(tmp_path: Path) -> None:
    path, raw = _written(tmp_path)
    state = sc._read_index(path)
    assert state is not None
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x40]))
    assert sc._read_data(path, state) is None
    path.write_bytes(_with_header(raw, data_len=39))
    assert sc._read_data(path, state) is None
    path.unlink()
    assert sc._read_data(path, state) is None


# --- counts shared between processes ----------------------------------------------------------


def test_counts_are_added_to_the_shared_file_not_written_over(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    (folder / STATS_FILE).write_text(json.dumps({"hits": 5, "misses": 2, "tokens_restored": 9}))
    cache = _disk(folder)
    assert cache.find("m", _tokens(10), better_than=0) is None
    assert cache.flush()
    stored = json.loads((folder / STATS_FILE).read_text())
    assert stored == {"hits": 5, "misses": 3, "tokens_restored": 9}
    # Other processes are kept out by a lock file beside it.
    assert (folder / (STATS_FILE + ".lock")).exists()
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.tokens_restored) == (5, 3, 9)


def test_counts_not_yet_written_are_shown_with_the_stored_ones(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    (folder / STATS_FILE).write_text(json.dumps({"hits": 4, "other": 8}))
    cache = _disk(folder)
    assert cache._stored_counts() == {"hits": 4}  # only the counts are read
    submit = cache._submit
    held: list[tuple[str, object]] = []
    cache._submit = lambda job, payload: held.append((job, payload))  # type: ignore[method-assign]
    cache._count(misses=2, tokens_restored=6)  # the writer is not told yet
    assert held == [("stats", None)]
    shown = cache.stats()
    assert (shown.hits, shown.misses, shown.tokens_restored) == (4, 2, 6)
    cache._submit = submit  # type: ignore[method-assign]
    submit("stats", None)
    assert cache.flush()
    stored = json.loads((folder / STATS_FILE).read_text())
    assert stored == {"hits": 4, "misses": 2, "tokens_restored": 6}
    shown = cache.stats()  # counted once, not again from memory
    assert (shown.hits, shown.misses, shown.tokens_restored) == (4, 2, 6)


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"hits": "many"}'])
def test_an_unreadable_counts_file_counts_as_none(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    (folder / STATS_FILE).write_text(content)
    assert _disk(folder)._stored_counts() == {}


def test_no_lookups_write_no_counts_file(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder)
    cache._submit("stats", None)
    assert cache.flush()
    assert not (folder / STATS_FILE).exists()


# --- the writer thread ------------------------------------------------------------------------


def test_the_writer_thread_ends_when_idle_and_a_new_one_starts_for_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sc, "_WRITER_IDLE_S", 0.05)
    cache = _disk(tmp_path / "states")
    cache.put("m", _tokens(10), bytearray(10))
    assert cache.flush()
    writer = cache._writer
    assert writer is not None and writer.name == "model-state-writer" and writer.daemon
    writer.join(10)
    assert not writer.is_alive() and cache._writer is None
    cache.put("m", _tokens(10, start=50), bytearray(10))
    assert cache.flush()
    assert cache.stats().disk_states == 2


def test_a_failed_write_is_logged_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "states"
    blocker.write_text("a file where the folder should be")
    cache = StateCache(blocker, memory_budget=1000, min_tokens=4)
    with caplog.at_level(logging.ERROR, logger="assistant.engine.state_cache"):
        cache.put("m", _tokens(10), bytearray(10))
        assert cache.flush()
    assert "Could not save model state (write)" in caplog.messages
    # The answer's state is still in memory.
    assert cache.find("m", _tokens(11), better_than=0) is not None
    # The counts that could not be saved are kept, and saved once the folder can be made.
    with caplog.at_level(logging.ERROR, logger="assistant.engine.state_cache"):
        assert cache.flush()
    assert "Could not save model state (stats)" in caplog.messages
    assert cache.flush()  # a third failed try: the counts are still kept whole
    blocker.unlink()
    assert cache.flush()
    assert json.loads((blocker / STATS_FILE).read_text()) == {
        "hits": 1,
        "misses": 0,
        "tokens_restored": 10,
    }


def test_a_write_that_fails_halfway_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "states"
    cache = _disk(folder)

    def refuse(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sc.os, "fsync", refuse)
    cache.put("m", _tokens(10), bytearray(10))
    assert cache.flush()
    assert sorted(p.name for p in folder.iterdir()) == []
    assert cache.stats().disk_states == 0


# --- more edges ---------------------------------------------------------------------------------


def test_a_state_only_on_disk_is_found_by_the_cache_that_wrote_it(tmp_path: Path) -> None:
    cache = _disk(tmp_path / "states")  # no memory tier: the file is all there is
    cache.put("m", _tokens(10), bytearray(b"k" * 10))
    assert cache.flush()
    match = cache.find("m", _tokens(11), better_than=0)
    assert match is not None and bytes(match.data) == b"k" * 10


def test_a_later_turn_deletes_the_earlier_turns_file_in_another_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    first = _disk(folder)
    first.put("m", _tokens(60), bytearray(60))
    assert first.flush()
    earlier = _file_of(first, _tokens(60))
    assert earlier.exists()
    later = _disk(folder)  # knows the earlier turn from the folder only
    # The engine looks a prompt up before it saves the context: the folder is read then.
    assert later.find("m", [*_tokens(60), 5000], better_than=70) is None
    with caplog.at_level(logging.ERROR, logger="assistant.engine.state_cache"):
        later.put("m", _tokens(100), bytearray(100))
        assert later.flush()
    assert not earlier.exists()
    assert [p.name for p in folder.glob("*" + SUFFIX)] == [_file_of(later, _tokens(100)).name]
    assert later.stats().disk_states == 1
    assert not caplog.messages


def test_another_models_states_never_hide_the_right_one() -> None:
    """Whatever comes first among the candidates, the search goes on past states of another
    model, states already tried and states too long to be worth it."""
    cache = _memory()
    cache.put("other", _tokens(40), bytearray(b"o" * 40))  # another model
    cache.put("m", [*_tokens(5), *_tokens(500, start=1000)], bytearray(b"t" * 50))  # too long
    cache.put("m", _tokens(20), bytearray(b"m" * 20))
    match = cache.find("m", _tokens(30), better_than=0)
    assert match is not None and bytes(match.data[:1]) == b"m"
    # A new turn of one model is not held back by another model's states either.
    cache.put("m", _tokens(30), bytearray(30))
    assert _states_of(cache) == {("other", 40), ("m", 505), ("m", 30)}


def _states_of(cache: StateCache) -> set[tuple[str, int]]:
    return {(state.fingerprint, len(state.tokens)) for state in cache._memory.values()}


def test_of_two_equal_prefixes_the_smaller_state_wins_whichever_came_first() -> None:
    cache = _memory()
    cache.put("m", [*_tokens(40), 8, 8, 8, 8], bytearray(b"s" * 300))
    cache.put("m", [*_tokens(40), 7, 7, 7, 7], bytearray(b"L" * 400))
    match = cache.find("m", [*_tokens(40), 9, 9], better_than=0)
    assert match is not None and bytes(match.data[:1]) == b"s"


def test_states_and_counts_are_written_into_a_folder_not_made_yet(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "model-state"
    cache = _disk(folder)
    assert cache.find("m", _tokens(10), better_than=0) is None  # a miss, to be counted
    assert cache.flush()
    assert json.loads((folder / STATS_FILE).read_text())["misses"] == 1
    other = _disk(tmp_path / "elsewhere" / "model-state")
    other.put("m", _tokens(10), bytearray(10))
    assert other.flush()
    assert other.stats().disk_states == 1


def test_a_one_byte_state_is_written(tmp_path: Path) -> None:
    cache = _disk(tmp_path / "states")
    cache.put("m", _tokens(10), bytearray(b"1"))
    assert cache.flush()
    assert _file_of(cache, _tokens(10)).exists()


def test_a_memory_only_cache_starts_no_writer(tmp_path: Path) -> None:
    cache = StateCache(None, memory_budget=100)
    cache.set_budgets(memory=50, disk=5000)
    cache.put("m", _tokens(100), bytearray(10))
    assert cache.find("m", _tokens(101), better_than=0) is not None
    assert cache._writer is None


def test_a_folder_where_a_state_file_should_be_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    odd = folder / ("odd" + SUFFIX)
    odd.mkdir(parents=True)
    cache = _disk(folder)
    assert cache.stats().disk_states == 0  # unreadable, and cannot be deleted: no error
    assert odd.is_dir()


@pytest.mark.parametrize("length", [1 << 16, (1 << 16) + 1, (1 << 17) - 10])
def test_a_header_is_read_up_to_64_kib(tmp_path: Path, length: int) -> None:
    path, raw = _written(tmp_path)
    start, end = len(MAGIC) + 4, _header_end(raw)
    header = raw[start:end]
    padded = header + b" " * (length - len(header))
    path.write_bytes(MAGIC + struct.pack("<I", length) + padded + raw[end:])
    state = sc._read_index(path)
    assert (state is not None) == (length <= 1 << 16)


def test_an_unreadable_file_does_not_hide_the_files_listed_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    writer = _disk(folder)
    for n in range(6):
        writer.put("m", _tokens(10, start=100 * n), bytearray(10))
    assert writer.flush()
    for name in ("0-bad", "5-bad", "z-bad"):
        (folder / (name + SUFFIX)).write_bytes(b"not a state")
    assert _disk(folder).stats().disk_states == 6
