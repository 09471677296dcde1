"""The model's memory of conversations: saved KV states, in memory and on disk.

Reading a long conversation ("prefill") is the slow part of answering on a CPU. After reading
one, the engine can copy the context's KV cache out (one sequence's cells, through llama.cpp's
``llama_state_seq_*`` calls) and put it back later, so continuing that conversation, after
switching to another, from a new process or after a restart, evaluates only the new tokens.

A saved state is kept with the exact tokens it holds and the *fingerprint* of what produced it
(the model file, the context size and every setting that changes the KV cache). A lookup
compares the tokens of the new prompt with each state of the same fingerprint and uses the
longest common prefix, so an edited or regenerated message, a changed system prompt or another
model falls back to the longest still-valid prefix, or to a full read: never a wrong answer.
A new chat whose system prompt matches a saved state starts from it the same way.

Two tiers:

- memory: the most recently used states, least recently used evicted first, bounded in bytes
  (by default a share of this computer's RAM, see :func:`default_memory_budget`);
- disk: one file per state in the cache folder (``model-state/``), oldest evicted first,
  bounded by a setting. Files are written by a background thread, atomically (temporary file,
  then rename), so saving never holds up an answer; a damaged or truncated file is discarded
  with a log line. Several processes (the app, ``ask --conversation``) share the folder.

This module knows nothing of llama.cpp or of conversations: states are opaque bytes, keyed by
tokens. The engine decides what to save and restores it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import struct
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.atomic import atomic_write_text
from assistant.models.hardware import GIB, MIB, Hardware

log = logging.getLogger(__name__)

FOLDER_NAME = "model-state"
SUFFIX = ".kvstate"
STATS_FILE = "stats.json"
MAGIC = b"OAKVSTATE1\n"
_LENGTH = struct.Struct("<I")

DEFAULT_DISK_BUDGET = 4 * GIB
MIN_TOKENS = 64
"""States shorter than this are not worth keeping: reading that many tokens takes a moment."""

RESTORE_RATIO = 16
"""Restoring a state is much cheaper per token than reading the tokens again (about 50x for
SmolLM2 on a laptop CPU, memory to memory). A state is used for a shorter prefix than it holds
(a new chat sharing a system prompt with a long saved one) only while the prefix is at least
1/RESTORE_RATIO of the state: beyond that, restoring it costs more than it saves."""

DOMINATED_SHARE = 0.5
"""A new state makes an older one that holds a prefix of it redundant (the same chat, a turn
earlier) when the older one holds at least this share of its tokens. A much shorter one (a
shared system prompt) is kept: it is the cheap start for new chats."""

_TEMP_MAX_AGE_S = 3600.0
_WRITER_IDLE_S = 5.0
_COUNTS = ("hits", "misses", "tokens_restored")

# numpy is imported where tokens are handled, not here: the doctor and ``models memory`` read
# this folder's figures in a process that must not load it where no state was ever saved (on a
# processor below numpy's baseline its import fails, or dies of an illegal instruction).
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Tokens = npt.NDArray[np.int32]


_OPEN_CACHES: weakref.WeakSet[StateCache] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """Finish the writes in flight before the interpreter ends (the writer is a daemon)."""
    for cache in list(_OPEN_CACHES):
        cache.flush(timeout=30.0)


def default_memory_budget(hardware: Hardware) -> int:
    """Bytes of RAM for saved states when the user chose "automatic": 1/16 of the RAM, at most
    a quarter of what is free now, between 64 MiB and 4 GiB."""
    budget = min(hardware.total_ram // 16, hardware.available_ram // 4)
    return int(max(64 * MIB, min(4 * GIB, budget)))


def common_prefix(held: Sequence[int] | Tokens, wanted: Sequence[int] | Tokens) -> int:
    """How many leading tokens the two sequences share."""
    import numpy as np

    a = np.asarray(held, dtype=np.int32)
    b = np.asarray(wanted, dtype=np.int32)
    size = min(len(a), len(b))
    if size == 0:
        return 0
    differ = np.flatnonzero(a[:size] != b[:size])
    return int(differ[0]) if len(differ) else size


def _token_hash(tokens: Tokens) -> str:
    return hashlib.sha256(tokens.astype("<i4").tobytes()).hexdigest()


@dataclass
class SavedState:
    """One state: the exact tokens it holds and llama.cpp's bytes for them (None on disk
    until loaded)."""

    fingerprint: str
    tokens: Tokens
    size: int
    data: bytearray | None = None
    path: Path | None = None

    @cached_property
    def key(self) -> str:
        """Names the state (and its file): the same tokens of the same model, the same key."""
        return f"{self.fingerprint[:16]}-{_token_hash(self.tokens)[:40]}"


@dataclass(frozen=True)
class StateMatch:
    """A saved state usable for a prompt: restore ``data`` (which holds ``tokens``), then keep
    the first ``usable`` tokens of it."""

    state: SavedState
    data: bytearray
    usable: int


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and how well it served, this process and others together."""

    memory_bytes: int
    memory_states: int
    memory_budget: int
    disk_bytes: int
    disk_states: int
    disk_budget: int
    hits: int
    misses: int
    tokens_restored: int

    @property
    def hit_rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None


class StateCache:
    """Saved KV states, in memory (LRU, bounded in bytes) and in ``folder`` (bounded in bytes,
    oldest first). ``folder`` None keeps states in memory only; a budget of 0 turns that tier
    off. Thread-safe: the model thread looks up and saves, a writer thread writes files, any
    thread may ask for :meth:`stats` or :meth:`clear`."""

    def __init__(
        self,
        folder: Path | None,
        *,
        memory_budget: int,
        disk_budget: int = DEFAULT_DISK_BUDGET,
        min_tokens: int = MIN_TOKENS,
    ) -> None:
        self.folder = folder
        self.memory_budget = memory_budget
        self.disk_budget = disk_budget if folder is not None else 0
        self.min_tokens = min_tokens
        self._lock = threading.RLock()
        self._memory: OrderedDict[str, SavedState] = OrderedDict()
        self._memory_bytes = 0
        # Files seen in the folder: key -> (state without data, (size, mtime_ns)).
        self._disk: dict[str, tuple[SavedState, tuple[int, int]]] = {}
        # Lookups not yet added to the folder's stats file (all of them without a folder).
        self._unsaved_counts = dict.fromkeys(_COUNTS, 0)
        # Held while counts move from memory to the file, so that stats() never sees them in
        # neither place (nor in both).
        self._counts_lock = threading.Lock()
        self._jobs: queue.Queue[tuple[str, object]] = queue.Queue()
        self._writer: threading.Thread | None = None
        # States handed to the writer and not forgotten since: one found redundant before its
        # turn to be written is skipped (and a later turn can find it redundant here).
        self._pending: dict[str, SavedState] = {}
        _OPEN_CACHES.add(self)

    # --- lookups -----------------------------------------------------------------------

    def find(
        self, fingerprint: str, tokens: Sequence[int], *, better_than: int
    ) -> StateMatch | None:
        """The saved state sharing the longest prefix with ``tokens`` (at most all but the last
        token: sampling needs the last one's fresh logits), if that prefix is longer than
        ``better_than`` (what the context already holds) and worth restoring. Records a hit or
        a miss. A file found damaged is deleted and the next best state tried."""
        import numpy as np

        wanted = np.asarray(tokens, dtype=np.int32)
        limit = len(wanted) - 1
        tried: set[str] = set()
        while True:
            best = self._best(fingerprint, wanted, limit, better_than, tried)
            if best is None:
                self._count(misses=1)
                return None
            state, usable = best
            tried.add(state.key)
            data = self._load(state)
            if data is not None:
                self._count(hits=1, tokens_restored=usable)
                return StateMatch(state, data, usable)

    def _best(
        self, fingerprint: str, wanted: Tokens, limit: int, better_than: int, tried: set[str]
    ) -> tuple[SavedState, int] | None:
        self._scan()
        with self._lock:
            candidates = {k: s for k, (s, _stat) in self._disk.items()}
            candidates.update(self._memory)
        best: tuple[SavedState, int] | None = None
        for key, state in candidates.items():
            if key in tried or state.fingerprint != fingerprint:
                continue
            usable = min(common_prefix(state.tokens, wanted), limit)
            if usable <= better_than or usable < self.min_tokens:
                continue
            if usable * RESTORE_RATIO < len(state.tokens):
                continue
            if best is None or (usable, -state.size) > (best[1], -best[0].size):
                best = (state, usable)
        return best

    def _load(self, state: SavedState) -> bytearray | None:
        with self._lock:
            held = self._memory.get(state.key)
            if held is not None and held.data is not None:
                self._memory.move_to_end(state.key)
                return held.data
        if state.path is None:
            return None
        data = _read_data(state.path, state)
        if data is None:
            self.discard(state)
            return None
        with self._lock:
            # A state in use is the newest on disk too: eviction goes oldest first.
            with contextlib.suppress(OSError):
                os.utime(state.path)
            self._remember(SavedState(state.fingerprint, state.tokens, state.size, data))
        return data

    # --- saving --------------------------------------------------------------------------

    def put(self, fingerprint: str, tokens: Sequence[int], data: bytearray) -> None:
        """Keep ``data``, the state of exactly ``tokens``, in memory now and on disk soon.
        States shorter than ``min_tokens`` are ignored."""
        import numpy as np

        held = np.array(tokens, dtype=np.int32)
        if len(held) < self.min_tokens:
            return
        state = SavedState(fingerprint, held, len(data), data)
        with self._lock:
            for other in self._dominated(state):
                self._forget(other)
            self._remember(state)
        if self.folder is not None and 0 < state.size <= self.disk_budget:
            with self._lock:
                self._pending[state.key] = state
            self._submit("write", state)

    def _dominated(self, new: SavedState) -> list[SavedState]:
        """Saved states the new one makes redundant: shorter earlier turns of the same chat,
        on disk, in memory or still waiting to be written."""
        found = {}
        every = [s for s, _stat in self._disk.values()]
        every += [*self._memory.values(), *self._pending.values()]
        for state in every:
            if state.fingerprint != new.fingerprint or state.key == new.key:
                continue
            count = len(state.tokens)
            if (
                DOMINATED_SHARE * len(new.tokens) <= count <= len(new.tokens)
                and common_prefix(state.tokens, new.tokens) == count
            ):
                found[state.key] = state
        return list(found.values())

    def _remember(self, state: SavedState) -> None:
        """Put a state with its data in memory, evicting the least recently used."""
        if state.data is None or state.size > self.memory_budget:
            return
        old = self._memory.pop(state.key, None)
        if old is not None:
            self._memory_bytes -= old.size
        self._memory[state.key] = state
        self._memory_bytes += state.size
        while self._memory_bytes > self.memory_budget and self._memory:
            _key, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.size

    def _forget(self, state: SavedState) -> None:
        with self._lock:
            held = self._memory.pop(state.key, None)
            if held is not None:
                self._memory_bytes -= held.size
            self._pending.pop(state.key, None)
            on_disk = self._disk.pop(state.key, None)
        if on_disk is not None:
            self._submit("delete", on_disk[0])

    def discard(self, state: SavedState) -> None:
        """Drop a state that could not be used (damaged, or refused by llama.cpp)."""
        log.warning("Discarding saved model state %s (%d tokens).", state.key, len(state.tokens))
        self._forget(state)
        if state.path is not None:
            _unlink(state.path)

    def set_budgets(self, *, memory: int | None = None, disk: int | None = None) -> None:
        """Change the budgets; whatever no longer fits is evicted."""
        with self._lock:
            if memory is not None:
                self.memory_budget = memory
                while self._memory_bytes > self.memory_budget and self._memory:
                    _key, evicted = self._memory.popitem(last=False)
                    self._memory_bytes -= evicted.size
            if disk is not None and self.folder is not None:
                self.disk_budget = disk
        if disk is not None and self.folder is not None:
            self._submit("evict", None)

    def clear(self) -> int:
        """Forget every saved state, in memory and on disk; returns the bytes freed."""
        self.flush()
        with self._lock:
            self._pending.clear()
            freed = self._memory_bytes
            self._memory.clear()
            self._memory_bytes = 0
            self._disk.clear()
        if self.folder is not None and self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.suffix in (SUFFIX, ".tmp") or path.name == STATS_FILE:
                    freed += _size(path)
                    _unlink(path)
        with self._lock:
            self._unsaved_counts = dict.fromkeys(_COUNTS, 0)
        return freed

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until every state handed to :meth:`put` is on disk (the CLI calls this before
        it exits; it also runs at interpreter exit). False if ``timeout`` ran out first."""
        if self._writer is None:
            return True
        if self.folder is not None:
            self._jobs.put(("stats", None))
        done = threading.Event()
        self._submit("done", done)
        return done.wait(timeout)

    def stats(self) -> CacheStats:
        self._scan()
        with self._counts_lock:
            counts = self._stored_counts()
            with self._lock:
                for key, value in self._unsaved_counts.items():
                    counts[key] = counts.get(key, 0) + value
                return CacheStats(
                    memory_bytes=self._memory_bytes,
                    memory_states=len(self._memory),
                    memory_budget=self.memory_budget,
                    disk_bytes=sum(s.size for s, _stat in self._disk.values()),
                    disk_states=len(self._disk),
                    disk_budget=self.disk_budget,
                    hits=counts.get("hits", 0),
                    misses=counts.get("misses", 0),
                    tokens_restored=counts.get("tokens_restored", 0),
                )

    # --- the writer thread ---------------------------------------------------------------

    def _submit(self, job: str, payload: object) -> None:
        with self._lock:
            self._jobs.put((job, payload))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="model-state-writer", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            try:
                job, payload = self._jobs.get(timeout=_WRITER_IDLE_S)
            except queue.Empty:
                with self._lock:  # idle: end the thread; the next job starts another
                    if self._jobs.empty():
                        self._writer = None
                        return
                continue
            try:
                if job == "write" and isinstance(payload, SavedState):
                    self._write(payload)
                    self._evict_disk()
                elif job == "delete" and isinstance(payload, SavedState) and payload.path:
                    _unlink(payload.path)
                elif job == "evict":
                    self._evict_disk()
                elif job == "stats":
                    self._save_counts()
                elif job == "done" and isinstance(payload, threading.Event):
                    payload.set()
            except Exception:  # a failed write costs speed, never an answer
                log.exception("Could not save model state (%s)", job)

    def _write(self, state: SavedState) -> None:
        assert self.folder is not None and state.data is not None
        with self._lock:
            if self._pending.pop(state.key, None) is None:
                return  # found redundant meanwhile
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / (state.key + SUFFIX)
        if path.exists():
            return
        header = json.dumps(
            {
                "fingerprint": state.fingerprint,
                "n_tokens": len(state.tokens),
                "data_len": state.size,
                "tokens_crc32": zlib.crc32(state.tokens.astype("<i4").tobytes()),
                "data_crc32": zlib.crc32(state.data),
            }
        ).encode("utf-8")
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(MAGIC)
                handle.write(_LENGTH.pack(len(header)))
                handle.write(header)
                handle.write(state.tokens.astype("<i4").tobytes())
                handle.write(state.data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            _unlink(temp)
            raise
        stat = path.stat()
        with self._lock:
            self._disk[state.key] = (
                SavedState(state.fingerprint, state.tokens, state.size, path=path),
                (stat.st_size, stat.st_mtime_ns),
            )

    def _evict_disk(self) -> None:
        """Delete the oldest files until the folder fits its budget."""
        self._scan()
        with self._lock:
            entries = sorted(self._disk.items(), key=lambda item: item[1][1][1])
            total = sum(stat[0] for _state, stat in self._disk.values())
            doomed = []
            while entries and total > self.disk_budget:
                key, (state, stat) = entries.pop(0)
                total -= stat[0]
                doomed.append(state)
                del self._disk[key]
        for state in doomed:
            if state.path is not None:
                _unlink(state.path)

    # --- the folder ----------------------------------------------------------------------

    def _scan(self) -> None:
        """Bring the index of the folder up to date (other processes write there too)."""
        if self.folder is None:
            return
        seen: dict[str, tuple[Path, tuple[int, int]]] = {}
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            entries = []
        for entry in entries:
            try:
                stat = entry.stat()
            except OSError:
                continue
            if entry.name.endswith(".tmp") and now - stat.st_mtime > _TEMP_MAX_AGE_S:
                _unlink(Path(entry.path))  # left by a process that died while writing
            elif entry.name.endswith(SUFFIX):
                key = entry.name[: -len(SUFFIX)]
                seen[key] = (Path(entry.path), (stat.st_size, stat.st_mtime_ns))
        with self._lock:
            for key in list(self._disk):
                if key not in seen:
                    del self._disk[key]
                else:  # the time moves on a hit (os.utime): keep eviction order current
                    self._disk[key] = (self._disk[key][0], seen[key][1])
            fresh = [k for k in seen if k not in self._disk]
        for key in fresh:
            path, size_time = seen[key]
            state = _read_index(path)
            if state is None:
                if path.exists():  # not one removed by another process meanwhile
                    log.warning("Discarding unreadable saved model state %s.", path.name)
                    _unlink(path)
                continue
            with self._lock:
                self._disk[key] = (state, size_time)

    # --- hit counts, shared between processes -------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, value in deltas.items():
                self._unsaved_counts[key] += value
        if self.folder is not None:
            self._submit("stats", None)

    def _stored_counts(self) -> dict[str, int]:
        if self.folder is None:
            return {}
        try:
            raw = json.loads((self.folder / STATS_FILE).read_text(encoding="utf-8"))
            return {k: int(v) for k, v in raw.items() if k in _COUNTS}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_counts(self) -> None:
        from filelock import FileLock

        assert self.folder is not None
        with self._counts_lock:
            with self._lock:
                deltas, self._unsaved_counts = self._unsaved_counts, dict.fromkeys(_COUNTS, 0)
            if not any(deltas.values()):
                return
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / STATS_FILE
                with FileLock(str(path) + ".lock", timeout=10):
                    counts = self._stored_counts()
                    for key, value in deltas.items():
                        counts[key] = counts.get(key, 0) + value
                    atomic_write_text(path, json.dumps(counts))
            except BaseException:
                with self._lock:  # not saved: keep them for the next try
                    for key, value in deltas.items():
                        self._unsaved_counts[key] += value
                raise


def _read_header(handle: object) -> dict[str, int | str] | None:
    read = handle.read  # type: ignore[attr-defined]
    if read(len(MAGIC)) != MAGIC:
        return None
    raw = read(_LENGTH.size)
    if len(raw) != _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(raw)
    if length > 1 << 16:
        return None
    header = json.loads(read(length).decode("utf-8"))
    return header if isinstance(header, dict) else None


def _read_index(path: Path) -> SavedState | None:
    """The fingerprint and tokens of a state file, checked against its length; None when the
    file is not a whole state file."""
    try:
        with open(path, "rb") as handle:
            header = _read_header(handle)
            if header is None:
                return None
            count = int(header["n_tokens"])
            size = int(header["data_len"])
            raw = handle.read(4 * count)
            offset = handle.tell()
        if len(raw) != 4 * count or zlib.crc32(raw) != int(header["tokens_crc32"]):
            return None
        if path.stat().st_size != offset + size:
            return None
        import numpy as np

        tokens = np.frombuffer(raw, dtype="<i4").astype(np.int32)
        return SavedState(str(header["fingerprint"]), tokens, size, path=path)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _read_data(path: Path, state: SavedState) -> bytearray | None:
    """The state's bytes, checked against the header's checksum; None when damaged."""
    try:
        with open(path, "rb") as handle:
            header = _read_header(handle)
            if header is None or int(header["data_len"]) != state.size:
                return None
            handle.seek(4 * int(header["n_tokens"]), os.SEEK_CUR)
            data = bytearray(state.size)
            if handle.readinto(data) != state.size or handle.read(1):
                return None
        if zlib.crc32(data) != int(header["data_crc32"]):
            return None
        return data
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    # In use by another process (Windows): it goes at the next eviction.
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
