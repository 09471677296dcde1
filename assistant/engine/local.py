"""The local provider: llama.cpp (through llama-cpp-python) running a GGUF on this computer.

A llama context is not thread-safe: one ``LocalEngine`` is owned by one worker at a time, and
``stream_chat`` holds the engine's lock until its generation ends.

Follow-up turns reuse the KV cache: the new prompt is compared token by token with what the
context already holds, and only the part after the common prefix is evaluated. Time to first
token therefore tracks the length of the new message, not of the whole conversation.

With a :class:`~assistant.engine.state_cache.StateCache` attached, the context's state also
outlives a switch to another conversation, the engine and the process: before the context is
given to a prompt that shares little with it (another chat, a quick ask) or the engine closes,
its state is saved; a prompt the context cannot serve starts from the saved state sharing the
longest prefix with it. A long fixed preamble (the system prompt) is saved on its own, so new
chats that share it start from it.

Answers may also be decoded speculatively with drafts from the prompt
(:mod:`assistant.engine.prompt_lookup`): same tokens, fewer passes over the model. Only where a
batch gives the logits single tokens get (checked on the first batch, see ``_batch_is_exact``).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import llama_cpp
from llama_cpp._internals import LlamaBatch

from assistant.disk import format_bytes
from assistant.engine import kv_state, llama_log
from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    Generation,
    GenerationSettings,
    GenerationStats,
    LoadProgress,
    ProviderKind,
    SamplingPreset,
    StopReason,
)
from assistant.engine.load_progress import open_llama
from assistant.engine.prompt import FALLBACK_WARNING, PromptFormat, StopScanner
from assistant.engine.prompt_lookup import PromptLookup
from assistant.engine.state_cache import StateCache, StateMatch, common_prefix
from assistant.engine.threads import ThreadChooser
from assistant.errors import AssistantError, ContextOverflowError, InsufficientMemoryError
from assistant.models.gguf_file import GGUFInfo, explain_load_failure, read_gguf_info
from assistant.models.hardware import Hardware, detect_hardware, estimate_memory
from assistant.models.sampling import sampling_for_file

log = logging.getLogger(__name__)

_LOADING = threading.Lock()
"""One model load at a time in a process. Loading quietly, llama-cpp-python points the
process's stdout and stderr (file descriptors 1 and 2, and ``sys.stdout``/``sys.stderr``) at
/dev/null and back; two loads overlapping in two threads would restore each other's /dev/null
and leave the process's stderr silenced for good."""

DEFAULT_CONTEXT = 4096
PIECE_BUFFER = 64
"""Bytes first offered for a token's text; llama.cpp asks for more when a piece is longer."""

# Drafts on several CPU threads stay below this position (see LocalEngine._exact_draft_room).
EXACT_DRAFT_POSITIONS = 256


class _EngineSettings(Protocol):
    """What ``from_settings`` reads; the engine does not depend on the settings module."""

    def __getitem__(self, key: str) -> Any: ...


class LocalEngine:
    """A loaded GGUF model that answers chats. Construct it on the worker that will own it."""

    provider_name = "local"
    kind: ProviderKind = "local"
    needs_key = False
    needs_network = False

    def __init__(
        self,
        model_path: Path | str,
        *,
        model_id: str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        hardware: Hardware | None = None,
        state_cache: StateCache | None = None,
        prompt_lookup: bool = False,
        progress: LoadProgress | None = None,
        sampling: SamplingPreset | None = None,
    ) -> None:
        """``progress`` hears how far the load is and may cancel it (``Cancelled`` is raised)."""
        self.path = Path(model_path)
        self.info: GGUFInfo = read_gguf_info(self.path)
        self.sampling: SamplingPreset | None = sampling or _recommended_sampling(self.info)
        """The model's recommended sampling (its catalog entry's, else its file's): it fills the
        fields each answer's settings leave to the model."""
        self.model_id = model_id or self.path.stem
        trained = self.info.context_length
        self.n_ctx = min(n_ctx, trained) if trained else n_ctx
        hardware = hardware or detect_hardware()
        self.hardware = hardware
        # Physical cores: llama.cpp decoding gains nothing from hyper-threads. Unless a count
        # is given, each answer uses those other programs leave free (engine.threads).
        self.max_threads = n_threads or max(1, hardware.physical_cores)
        self.n_threads = self.max_threads
        """Threads of the last answer (or of the first, before any)."""
        self.warnings: list[str] = []
        self._check_memory(hardware)

        with _LOADING, llama_log.capture() as lines:
            try:
                self._llama = open_llama(
                    progress,
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_batch=512,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_gpu_layers=n_gpu_layers if hardware.gpu_offload else 0,
                    # llama.cpp's own default ("auto") turns this on wherever it runs; the
                    # wrapper's default turns it off, costing ~10% of decode speed on CPU.
                    flash_attn=True,
                    verbose=False,
                )
            except ValueError as exc:
                raise explain_load_failure("".join(lines), self.info) from exc

        model = self._llama._model
        self._vocab = model.vocab
        self._format = PromptFormat(
            self.info.chat_template,
            bos_token=_token_text(model, model.token_bos()),
            eos_token=_token_text(model, model.token_eos()),
        )
        if self._format.uses_fallback:
            self.warnings.append(FALLBACK_WARNING)
            log.info("%s: %s", self.path.name, FALLBACK_WARNING)  # front ends show .warnings
        self._pieces: dict[int, bytes] = {}
        # Told each answer's stats once it ends (the speed predictions learn from them).
        self.on_stats: Callable[[GenerationStats], None] | None = None
        self._lock = threading.Lock()
        self._closed = False

        self.state_cache = state_cache
        self._threads = None if n_threads else ThreadChooser(self.max_threads)
        self.fingerprint = kv_state.context_fingerprint(
            self._llama, self.path, n_gpu_layers if hardware.gpu_offload else 0
        )
        # The context holds tokens no saved state holds yet (saved when the context moves on).
        self._unsaved = False
        self.prompt_lookup = prompt_lookup
        # Drafts need the tail of the cache to be removable; sliding-window and recurrent
        # memories cannot drop single positions.
        raw_model = model.model
        self._gpu_layers = n_gpu_layers if hardware.gpu_offload else 0
        self._can_draft = not (
            llama_cpp.llama_model_n_swa(raw_model) > 0
            or llama_cpp.llama_model_is_recurrent(raw_model)
            or llama_cpp.llama_model_is_hybrid(raw_model)
        )
        self._draft_batch: LlamaBatch | None = None
        self._batches_checked = False
        """Whether a batch was seen to give single-token decoding's logits (on the first
        batch of drafts, see ``_batch_is_exact``; where it did not, ``_can_draft`` is off)."""
        # What decoding costs on this machine, measured as the engine goes (seconds): one
        # token alone, and each further token of a batch of drafts. Drafts are sized by it.
        self._single_s = 0.0
        self._extra_s = 0.0
        self.batch_cost: float | None = None
        """What each token of a batch beyond the first costs, in single-token decodes, if
        fixed (tests); None: measured."""
        self.last_drafts = (0, 0)
        """Drafted and accepted tokens of the last answer (for benchmarks and tests)."""

    @classmethod
    def from_settings(
        cls,
        model_path: Path | str,
        settings: _EngineSettings,
        *,
        model_id: str | None = None,
        state_cache: StateCache | None = None,
        progress: LoadProgress | None = None,
    ) -> LocalEngine:
        """Load a model with the context size, threads and GPU layers the user chose
        (``context_size``, ``threads``, ``gpu_layers``, ``prompt_lookup`` of
        ``assistant.settings.Settings``)."""
        gpu = str(settings["gpu_layers"])
        layers = -1 if gpu == "auto" else 0 if gpu == "off" else int(gpu)
        try:
            prompt_lookup = bool(settings["prompt_lookup"])
        except KeyError:  # settings of an older shape (a snapshot, a test's dict)
            prompt_lookup = False
        return cls(
            model_path,
            model_id=model_id,
            n_ctx=settings["context_size"],
            n_threads=settings["threads"] or None,
            n_gpu_layers=layers,
            state_cache=state_cache,
            prompt_lookup=prompt_lookup,
            progress=progress,
        )

    def attach_state_cache(self, cache: StateCache | None) -> None:
        """Save and restore this engine's states in ``cache`` from now on (None: stop)."""
        with self._lock:
            self.state_cache = cache

    # --- provider interface --------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.model_id

    @property
    def uses_fallback_template(self) -> bool:
        return self._format.uses_fallback

    def stream_chat(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
    ) -> Generation:
        settings = settings.merged(self.sampling)
        tokens, dropped, stops = self.fit_prompt(messages, settings)
        generation = Generation(iter(()), dropped=dropped)
        preamble = partial(self._preamble_end, messages, tokens)
        generation._chunks = self._produce(generation, tokens, stops, settings, cancel, preamble)
        return generation

    def clear_context(self) -> None:
        """Forget what the context holds, without saving it: the next prompt is read in full
        (or from a saved state). For measurements and tests."""
        with self._lock:
            self._llama.reset()
            self._llama._ctx.kv_cache_clear()
            self._unsaved = False

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        """Free the model. The engine cannot answer afterwards (llama.cpp's memory is gone).
        With a state cache, the context's state is saved first (written in the background;
        ``StateCache.flush`` waits for it)."""
        with self._lock:
            if not self._closed:
                try:
                    self._save_state()
                finally:
                    self._closed = True
                    self._llama.close()

    # --- prompt fitting --------------------------------------------------------------------

    def answer_reserve(self, settings: GenerationSettings) -> int:
        """Tokens kept free for the answer when deciding whether a prompt fits."""
        return max(16, min(settings.max_tokens, self.n_ctx // 4))

    def fit_prompt(
        self, messages: list[ChatMessage], settings: GenerationSettings
    ) -> tuple[list[int], list[ChatMessage], tuple[str, ...]]:
        """Tokenize the conversation, dropping oldest turns (keeping system prompts) if the
        policy allows. Returns the prompt tokens, the dropped messages and the stop strings."""
        if self._closed:
            raise RuntimeError("this engine was closed; load the model again")
        if not messages:
            raise ValueError("a chat needs at least one message")
        budget = self.n_ctx - self.answer_reserve(settings)
        tokens, stops = self._tokenize_chat(messages)
        if len(tokens) <= budget:
            return tokens, [], stops
        if settings.overflow == "refuse":
            raise ContextOverflowError(
                f"This conversation is {len(tokens):,} tokens long, but the model's context "
                f"window holds {self.n_ctx:,} tokens, including room for the answer.",
                hint="Start a new conversation, raise the context size in Settings, or let "
                "the app drop the oldest turns.",
            )
        # Where the kept part may start: a whole exchange at a time, so the transcript still
        # alternates; the last message is always kept. Dropping more never makes the prompt
        # longer, so a binary search finds the fewest drops in a few renders, however long
        # the conversation.
        cuts = [
            i
            for i, message in enumerate(messages)
            if message.role == "user" or (i == len(messages) - 1)
        ]
        cuts = [i for i in cuts if any(m.role != "system" for m in messages[:i])]
        best: tuple[list[int], tuple[str, ...], int] | None = None
        low, high = 0, len(cuts) - 1
        last_tokens = tokens
        while low <= high:
            middle = (low + high) // 2
            candidate, candidate_stops = self._tokenize_chat(self._cut(messages, cuts[middle]))
            if len(candidate) <= budget:
                best, high = (candidate, candidate_stops, cuts[middle]), middle - 1
            else:
                last_tokens, low = candidate, middle + 1
        if best is None:
            raise ContextOverflowError(
                f"Your message alone is {len(last_tokens):,} tokens long, more than the model's "
                f"context window of {self.n_ctx:,} tokens can take with room for an answer.",
                hint="Shorten the message or raise the context size in Settings.",
            )
        fitted, fitted_stops, cut = best
        dropped = [m for m in messages[:cut] if m.role != "system"]
        return fitted, dropped, fitted_stops

    @staticmethod
    def _cut(messages: list[ChatMessage], start: int) -> list[ChatMessage]:
        """The system messages before ``start``, then everything from ``start`` on."""
        return [m for m in messages[:start] if m.role == "system"] + messages[start:]

    def _tokenize_chat(self, messages: list[ChatMessage]) -> tuple[list[int], tuple[str, ...]]:
        rendered = self._format.render(messages)
        tokens = self._llama.tokenize(
            rendered.text.encode("utf-8"),
            add_bos=not rendered.has_special_tokens,
            special=not self._format.uses_fallback,
        )
        return tokens, rendered.stop

    # --- what the context holds ------------------------------------------------------------

    def _reuse_cache(self, tokens: list[int]) -> int:
        """Keep the cached prefix shared with ``tokens``, or restore a saved state sharing a
        longer one; return how many tokens are already in the context."""
        llama = self._llama
        cached = llama.n_tokens
        prefix = common_prefix(llama._input_ids, tokens)
        # The last prompt token is always evaluated again: sampling needs its fresh logits.
        reuse = min(prefix, len(tokens) - 1)
        cache = self.state_cache
        match: StateMatch | None = None
        if cache is not None and len(tokens) - 1 - reuse >= cache.min_tokens:
            match = cache.find(self.fingerprint, tokens, better_than=reuse)
        if cache is not None and cached - reuse >= cache.min_tokens:
            # The context moves on to another prompt (another chat, an edit): keep what it
            # held, so coming back costs a restore instead of a read.
            self._save_state()
        if match is not None:
            return match.usable if self._restore(match) else 0
        if reuse > 0 and llama._ctx.kv_cache_seq_rm(-1, reuse, -1):
            llama.n_tokens = reuse
            return reuse
        llama.reset()
        llama._ctx.kv_cache_clear()
        return 0

    def _preamble_end(self, messages: list[ChatMessage], tokens: list[int]) -> int:
        """How many leading tokens of ``tokens`` do not depend on the conversation itself: the
        system prompt and the template's opening, up to the first user message's text. Found
        by rendering the chat again with another first message and comparing."""
        first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
        if not first:  # no system prompt, or nothing after it
            return 0
        variant = list(messages[: first + 1])
        variant[first] = ChatMessage(variant[first].role, "\u2063")
        other, _stops = self._tokenize_chat(variant)
        return common_prefix(other, tokens)

    def _save_state(self) -> None:
        """Hand the context's state to the cache, if it holds anything not saved yet."""
        cache = self.state_cache
        llama = self._llama
        if cache is None or not self._unsaved or llama.n_tokens < cache.min_tokens:
            return
        data = kv_state.copy_out(llama)
        if data is None:
            log.warning("llama.cpp returned no state for %d tokens.", llama.n_tokens)
            return
        cache.put(self.fingerprint, llama._input_ids.tolist(), data)
        self._unsaved = False

    def _restore(self, match: StateMatch) -> bool:
        """Load a saved state into the context and keep its first ``match.usable`` tokens.
        A state llama.cpp refuses is discarded; the context is then empty."""
        llama = self._llama
        held = len(match.state.tokens)
        if not kv_state.copy_in(llama, match.data, held, match.usable):
            log.warning("llama.cpp refused a saved state of %d tokens; reading afresh.", held)
            assert self.state_cache is not None
            self.state_cache.discard(match.state)
            llama.reset()
            return False
        llama.input_ids[: match.usable] = match.state.tokens[: match.usable]
        llama.n_tokens = match.usable
        self._unsaved = False
        return True

    # --- generation ------------------------------------------------------------------------

    def _produce(
        self,
        generation: Generation,
        tokens: list[int],
        stops: tuple[str, ...],
        settings: GenerationSettings,
        cancel: CancelToken | None,
        preamble_end: Callable[[], int],
    ) -> Iterator[str]:
        stats = GenerationStats(
            model=self.model_id, provider=self.provider_name, prompt_tokens=len(tokens)
        )
        generation.stats = stats
        with self._lock:
            started = time.perf_counter()
            first_token_at: float | None = None
            stop_reason: StopReason = "stop"
            llama = self._llama
            lookup: PromptLookup | None = None
            try:
                self._pick_threads()
                reused = self._reuse_cache(tokens)
                pending = tokens[reused:]
                stats.evaluated_prompt_tokens = len(pending)
                # A new chat reading its system prompt afresh: keep that part on its own, so
                # the next chat with the same prompt starts from it.
                cache = self.state_cache
                split = 0
                if cache is not None and len(pending) > cache.min_tokens:
                    boundary = preamble_end()
                    if reused < boundary < len(tokens) - 1 and boundary >= cache.min_tokens:
                        split = boundary - reused
                for part in (pending[:split], pending[split:]):
                    for start in range(0, len(part), llama.n_batch):
                        if cancel is not None and cancel.cancelled:
                            stop_reason = "cancelled"
                            return
                        self._decode(part[start : start + llama.n_batch])
                    if part and split:
                        self._save_state()
                        split = 0

                llama.set_seed(
                    settings.seed if settings.seed is not None else random.getrandbits(31)
                )
                sampler = llama._init_sampler(
                    top_k=settings.top_k,
                    top_p=settings.top_p,
                    min_p=settings.min_p,
                    temp=settings.temperature,
                    repeat_penalty=settings.repeat_penalty,
                )
                if self.prompt_lookup and self._can_draft:
                    lookup = PromptLookup(tokens)
                    if self.batch_cost is not None:
                        lookup.batch_cost = self.batch_cost
                    elif self.measured_batch_cost is not None:
                        lookup.batch_cost = self.measured_batch_cost
                clock = time.perf_counter
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                scanner = StopScanner(stops + tuple(settings.stop))
                trim_start = self._format.uses_fallback
                to_piece = self._token_bytes
                is_end = llama_cpp.llama_vocab_is_eog
                # Drafted tokens already in the context after the last accepted one, and where
                # the logits for the next sample sit in the last batch.
                drafts: list[int] = []
                logits_at = -1
                round_accepted = round_drafted = 0
                while True:
                    if cancel is not None and cancel.cancelled:
                        stop_reason = "cancelled"
                        break
                    full = llama.n_tokens >= self.n_ctx
                    if full or stats.completion_tokens >= settings.max_tokens:
                        stop_reason = "length"
                        break
                    token = sampler.sample(llama._ctx, logits_at)
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    accepted = bool(drafts) and token == drafts[0]
                    settled = False  # this round of drafts is over: all taken, or one missed
                    if accepted:
                        drafts.pop(0)
                        round_accepted += 1
                        settled = not drafts
                    elif drafts:
                        self._drop_drafts(drafts)
                        settled = True
                    if lookup is not None:
                        lookup.push(token)
                        if settled:
                            lookup.record(round_accepted, round_drafted)
                    if is_end(self._vocab, token):
                        break
                    stats.completion_tokens += 1
                    text = scanner.feed(decoder.decode(to_piece(token)))
                    if trim_start and text:
                        # After "Assistant:" a base model starts with a space; the transcript
                        # strips it again next turn, so nothing is lost for the cache.
                        text = text.lstrip()
                        trim_start = not text
                    if text:
                        yield text
                    if scanner.stopped:
                        break
                    if accepted:  # already in the context: its logits are the next position's
                        llama.input_ids[llama.n_tokens] = token
                        llama.n_tokens += 1
                        logits_at += 1
                        continue
                    if lookup is not None:
                        room = min(
                            settings.max_tokens - stats.completion_tokens - 1,
                            self.n_ctx - llama.n_tokens - 2,
                            self._exact_draft_room(llama.n_tokens),
                        )
                        drafts = lookup.propose(room)
                    if drafts and not self._batches_checked:
                        self._batches_checked = True
                        if not self._batch_is_exact(token, drafts):
                            self._can_draft = False
                            drafts = []
                            lookup = None
                    if drafts:
                        began = clock()
                        self._decode_drafts(token, drafts)
                        if lookup is not None:
                            self._learn_cost(lookup, len(drafts) + 1, clock() - began)
                        logits_at = 0
                        round_accepted, round_drafted = 0, len(drafts)
                    elif lookup is None:  # plain decoding: nothing to time
                        self._decode([token])
                        logits_at = -1
                    else:
                        began = clock()
                        self._decode([token])
                        self._learn_cost(lookup, 1, clock() - began)
                        logits_at = -1
                if drafts:
                    self._drop_drafts(drafts)
                tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
                if tail:
                    yield tail
            except (GeneratorExit, KeyboardInterrupt):  # the consumer stopped: not a failure
                stop_reason = "cancelled"
                raise
            except BaseException:
                stop_reason = "error"
                # What the context holds after a failed decode is unknown: neither reuse nor
                # save it.
                self._unsaved = False
                llama.reset()
                llama._ctx.kv_cache_clear()
                raise
            finally:
                if stop_reason != "error":
                    # Drafts left after a stop: the context must hold what n_tokens says.
                    llama._ctx.kv_cache_seq_rm(0, llama.n_tokens, -1)
                self.last_drafts = (
                    (lookup.drafted, lookup.accepted) if lookup is not None else (0, 0)
                )
                ended = time.perf_counter()
                stats.stop_reason = stop_reason
                stats.dropped_messages = len(generation.dropped)
                stats.total_s = ended - started
                if first_token_at is not None:
                    stats.ttft_s = first_token_at - started
                    decode_time = ended - first_token_at
                    if stats.completion_tokens > 1 and decode_time > 0:
                        stats.tokens_per_s = (stats.completion_tokens - 1) / decode_time
                if self._threads is not None:
                    self._threads.rest()
                # An answer that shared the processor says nothing of its speed when free.
                if self.on_stats is not None and self.n_threads == self.max_threads:
                    try:
                        self.on_stats(stats)
                    except Exception:  # an observer's bug must not replace the answer's end
                        log.exception("The answer's stats observer failed")

    def _pick_threads(self) -> None:
        """Leave the cores other programs keep busy (see :mod:`assistant.engine.threads`)."""
        if self._threads is None:
            return
        wanted = self._threads.pick()
        if wanted != self.n_threads:
            log.info(
                "Other programs keep %.1f cores busy: answering with %d of %d threads.",
                self._threads.others_busy,
                wanted,
                self.max_threads,
            )
            self._llama._ctx.set_n_threads(wanted, wanted)
            self.n_threads = wanted

    def _decode(self, tokens: list[int]) -> None:
        """Evaluate tokens after those already in the context (at most one batch).

        Calls llama.cpp directly rather than ``Llama.eval``, which clears the cache tail and
        rebuilds a batch in Python on every call: a measurable cost per generated token.
        The ``Llama`` object's token record is kept in step so prefix reuse still works.
        """
        llama = self._llama
        count = len(tokens)
        array = (llama_cpp.llama_token * count)(*tokens)
        if llama_cpp.llama_decode(llama._ctx.ctx, llama_cpp.llama_batch_get_one(array, count)):
            raise InsufficientMemoryError(
                "The engine ran out of room while reading the conversation.",
                hint="Lower the context size or start a new conversation.",
            )
        llama.input_ids[llama.n_tokens : llama.n_tokens + count] = tokens
        llama.n_tokens += count
        self._unsaved = True

    def _exact_draft_room(self, n_tokens: int) -> int:
        """How many drafts a batch starting after ``n_tokens`` may hold and still give the
        logits single-token decoding would (the answer must not change by drafting).

        On the CPU with more than one thread, llama.cpp's flash attention splits the cached
        positions among the threads for a single token once 512 cells are in use (beyond
        position 255) and adds the parts afterwards, while a batch sums each row in one pass:
        from there, batch logits differ from single-token ones (by up to ~0.5 here) and a near
        tie can go the other way. Offloaded layers use other kernels for batches and single
        tokens at every position.
        """
        if self._gpu_layers:
            return 0
        if self.n_threads > 1:
            return EXACT_DRAFT_POSITIONS - n_tokens - 1
        return self.n_ctx

    def _decode_drafts(self, token: int, drafts: list[int]) -> None:
        """Evaluate ``token`` (accepted) and ``drafts`` (not yet) in one batch, with logits
        for every position, so each draft can be checked against what the model samples."""
        llama = self._llama
        batch_tokens = [token, *drafts]
        if self._draft_batch is None:
            self._draft_batch = LlamaBatch(n_tokens=64, embd=0, n_seq_max=1, verbose=False)
        batch = self._draft_batch
        batch.set_batch(batch_tokens, llama.n_tokens, logits_all=True)
        if llama_cpp.llama_decode(llama._ctx.ctx, batch.batch):
            raise InsufficientMemoryError(
                "The engine ran out of room while writing the answer.",
                hint="Lower the context size or start a new conversation.",
            )
        llama.input_ids[llama.n_tokens] = token
        llama.n_tokens += 1
        self._unsaved = True

    def _batch_is_exact(self, token: int, drafts: list[int]) -> bool:
        """Whether the batch of ``token`` and ``drafts`` gives, for ``token``, the logits it
        gets decoded alone; the context is left as it was.

        llama.cpp multiplies a batch's rows by other kernels than a single token's where
        this processor has them: on AVX-512, f16 and f32 weights then differ in the last
        bits (quantized ones, read the same way either way, do not). A near tie could go
        the other way and drafting would change the answer, so the engine drafts only
        where the first batch matches, bit for bit.
        """
        llama = self._llama
        start, unsaved = llama.n_tokens, self._unsaved
        size = llama.n_vocab() * ctypes.sizeof(ctypes.c_float)
        self._decode([token])
        alone = ctypes.string_at(llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1), size)
        self._drop_drafts([], start)
        self._decode_drafts(token, drafts)
        batched = ctypes.string_at(llama_cpp.llama_get_logits_ith(llama._ctx.ctx, 0), size)
        self._drop_drafts([], start)
        self._unsaved = unsaved
        if batched != alone:
            log.info(
                "%s: drafting is off, since a batch's logits differ here from a single "
                "token's and drafts could change the answer.",
                self.path.name,
            )
            return False
        return True

    def _learn_cost(self, lookup: PromptLookup, count: int, seconds: float) -> None:
        """Fold the time of one decode of ``count`` tokens into the cost model that sizes
        drafts. Averages move slowly: on a shared CPU single timings vary several-fold."""
        if count == 1:
            self._single_s = self._single_s * 0.9 + seconds * 0.1 if self._single_s else seconds
        elif self._single_s:
            extra = max(0.0, seconds - self._single_s) / (count - 1)
            self._extra_s = self._extra_s * 0.8 + extra * 0.2 if self._extra_s else extra
        if self.batch_cost is None and self.measured_batch_cost is not None:
            lookup.batch_cost = self.measured_batch_cost

    @property
    def measured_batch_cost(self) -> float | None:
        """What each token of a batch beyond the first has cost so far, in single-token
        decodes (None before any batch of drafts)."""
        if not (self._single_s and self._extra_s):
            return None
        return min(2.0, max(0.02, self._extra_s / self._single_s))

    def _drop_drafts(self, drafts: list[int], keep: int | None = None) -> None:
        """Remove drafts that were not accepted from the context (and, with ``keep``, all
        positions from ``keep`` on)."""
        llama = self._llama
        if keep is not None:
            llama.n_tokens = keep
        llama._ctx.kv_cache_seq_rm(0, llama.n_tokens, -1)
        drafts.clear()

    def _token_bytes(self, token: int) -> bytes:
        """The bytes of one token (cached). Multi-byte characters may span several tokens."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(PIECE_BUFFER)
            size = llama_cpp.llama_token_to_piece(
                self._vocab, token, buffer, PIECE_BUFFER, 0, False
            )
            if size < 0:
                buffer = ctypes.create_string_buffer(-size)
                size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
            piece = self._pieces[token] = buffer.raw[: max(size, 0)]
        return piece

    def _check_memory(self, hardware: Hardware) -> None:
        needed = estimate_memory(
            self.info.file_size,
            self.n_ctx,
            layers=self.info.layers,
            kv_heads=self.info.kv_heads,
            head_dim=self.info.head_dim,
        ).total
        if needed > hardware.total_ram:
            raise InsufficientMemoryError(
                f"{self.info.name} needs about {format_bytes(needed)} of memory with a "
                f"{self.n_ctx:,}-token context, but this computer has "
                f"{format_bytes(hardware.total_ram)}.",
                hint="Pick a smaller model or lower the context size in Settings.",
            )


def _token_text(model: object, token: int) -> str:
    if token < 0:
        return ""
    return str(model.token_get_text(token))  # type: ignore[attr-defined]


def _recommended_sampling(info: GGUFInfo) -> SamplingPreset | None:
    from assistant.models.catalog import load_catalog

    try:
        catalog = load_catalog()
    except AssistantError:  # a broken installation: the file's own metadata still counts
        catalog = None
    return sampling_for_file(info, catalog)
