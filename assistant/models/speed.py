"""How fast a model will answer on this computer, before it is downloaded.

Decoding (writing the answer) reads every weight once per token, so on a CPU it is bound by
memory bandwidth: tokens/s ≈ effective bandwidth / bytes of weights. Reading the prompt works on
hundreds of tokens per pass and is bound by arithmetic: tokens/s ≈ effective FLOP/s / FLOPs per
token (two per weight outside the embedding table, plus attention).

What these need from the machine is measured once (:func:`calibrate`: a streaming read of a
buffer larger than any cache, with one thread and with all of them, and a float32 matrix
product), cached in the app's cache folder with a fingerprint of the hardware and measured again
when the fingerprint changes. How llama.cpp's quantized kernels compare with those plain
measurements is a constant per kind of work (``*_EFFICIENCY``), fitted on a real run; what is
left, this machine's own character, is learnt from use: every local answer's measured speed moves
a per-machine factor (:class:`SpeedFactors`) toward what was seen.

Qt-free; the model manager, the welcome screen and ``models list`` all show these figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assistant.atomic import atomic_write_text
from assistant.models.hardware import Hardware, fit_for_spec, recommend

if TYPE_CHECKING:
    from assistant.engine.base import GenerationStats
    from assistant.models.catalog import ModelSpec
    from assistant.models.gguf_file import GGUFInfo

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]

PROFILE_FILE = "speed-profile.json"
FACTORS_FILE = "speed-factors.json"
PROFILE_VERSION = 1

# The constants below were fitted with benchmarks/bench_predict.py --shaped on seven models
# (135M to 1.7B parameters, Q4_1, Q4_K_M and Q8_0; 1 and 2 threads) on a 2-core machine: every
# prediction within 10 % of the measured speed there. See the README's bench_predict section.
#
# Writing the answer (decoding) reads every weight once per token and does two FLOPs with each:
# whichever of the two takes longer sets the pace. llama.cpp's matrix-vector kernels stream the
# weights at this share of a plain read (numpy summing a large float32 buffer) ...
DECODE_EFFICIENCY = 0.85
# ... and compute at this share of one thread's float32 matrix products.
DECODE_COMPUTE_EFFICIENCY = 0.85
# Per token, whatever the model's size: building and scheduling the graph, the small
# operations between the matrix products, attention, the sampler. Counted as work at one
# thread's float32 rate (GFLOP), so a faster processor pays less.
DECODE_FIXED_GFLOP = 0.8
# Each thread beyond the first adds this share of one thread's decoding speed: the threads
# meet after every operation, hundreds of times per token.
DECODE_THREAD_GAIN = 0.3
# Reading the prompt multiplies matrices of hundreds of tokens, where llama.cpp's kernels for
# some formats (repacked for the processor's integer dot products) do better than float32
# BLAS. Share of the float32 rate per thread, by the format of most of the weights:
PROMPT_EFFICIENCY = {"Q4_K": 1.1, "Q4_0": 1.1, "IQ4_NL": 1.1, "Q4_1": 0.8, "Q8_0": 0.8}
PROMPT_EFFICIENCY_DEFAULT = 0.7
# Narrow models (576–640 wide) keep the cores less busy between operations: the efficiency
# falls in proportion below this width.
PROMPT_FULL_WIDTH = 1024
# Attention in the prompt is counted at this many tokens of context (a short chat turn).
NOMINAL_PROMPT_TOKENS = 512

# llama.cpp's file types (general.file_type in a GGUF header) that the catalog and common
# downloads use, by the name the catalog gives them.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    25: "IQ4_NL",
    30: "IQ4_XS",
    32: "BF16",
}

# Without a measurement: a modest laptop, so the first guess errs on the slow side.
GUESS_READ_GBPS_PER_THREAD = 6.0
GUESS_READ_GBPS_MAX = 20.0
GUESS_GFLOPS_PER_THREAD = 25.0

# Learning from use: each answer moves the factor this share of the way (in log space) toward
# what it measured; the first answers weigh more (a running mean until it falls to this).
LEARNING_RATE_FLOOR = 0.2
# A measurement this far from the prediction is a hiccup (a suspended laptop), not the machine.
RATIO_LIMIT = 20.0
# Too few tokens time the overheads, not the model.
MIN_DECODE_TOKENS = 8
MIN_PROMPT_TOKENS = 48

# Vocabulary sizes by catalog family: the catalog does not list them, and the embedding table
# they size matters (it is read for every token, and it is most of a tiny model).
FAMILY_VOCAB = {
    "SmolLM2": 49_152,
    "Qwen2.5": 151_936,
    "Qwen3": 151_936,
    "Llama 3.2": 128_256,
    "Gemma 3": 262_144,
    "Phi": 32_064,
}
DEFAULT_VOCAB = 64_000


# --- what a model costs per token -----------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What a model's speed depends on. ``weight_bytes`` is the GGUF's size."""

    weight_bytes: int
    parameters: int
    layers: int
    vocab_size: int
    embedding_length: int
    quantization: str = ""
    """The format of most weights ("Q4_K_M", "Q8_0"); empty when unknown."""

    @property
    def decode_bytes_per_token(self) -> int:
        return self.weight_bytes

    @property
    def decode_flops_per_token(self) -> float:
        """Two FLOPs per weight: the output layer (often the embedding table itself) is
        computed for every token, so here nothing is left out."""
        return 2.0 * self.parameters

    @property
    def prompt_efficiency(self) -> float:
        """Share of the float32 rate llama.cpp reaches on a prompt with these weights."""
        kind = self.quantization.upper()
        share = PROMPT_EFFICIENCY_DEFAULT
        for prefix, value in PROMPT_EFFICIENCY.items():
            if kind.startswith(prefix):
                share = value
                break
        return share * min(1.0, self.embedding_length / PROMPT_FULL_WIDTH)

    @property
    def prompt_flops_per_token(self) -> float:
        """Two FLOPs per weight outside the token embedding (only the last prompt token's
        logits are computed), and attention over half the nominal prompt on average."""
        body = max(self.parameters - self.vocab_size * self.embedding_length, self.parameters // 4)
        attention = 2 * self.layers * self.embedding_length * NOMINAL_PROMPT_TOKENS
        return 2.0 * body + attention


def _estimated_width(parameters: int, layers: int, vocab: int) -> int:
    """The embedding width that makes ``12 * layers * d² + vocab * d`` the parameter count:
    a transformer block holds about 12·d² weights. Within 10 % for the catalog's models."""
    a, b = 12.0 * layers, float(vocab)
    return max(64, int((-b + math.sqrt(b * b + 4 * a * parameters)) / (2 * a)))


def _guess_layers(parameters: int) -> int:
    return max(12, min(64, round(16 + 5 * math.log2(max(parameters, 1e8) / 1e8))))


def shape_for_spec(spec: ModelSpec) -> ModelShape:
    """The shape of a catalog model, from its entry (vocabulary by family)."""
    layers = spec.layers or _guess_layers(spec.parameters)
    vocab = FAMILY_VOCAB.get(spec.family, DEFAULT_VOCAB)
    return ModelShape(
        weight_bytes=spec.size_bytes,
        parameters=spec.parameters,
        layers=layers,
        vocab_size=vocab,
        embedding_length=_estimated_width(spec.parameters, layers, vocab),
        quantization=spec.quantization,
    )


def shape_for_gguf(info: GGUFInfo) -> ModelShape:
    """The shape of a GGUF file, from its header (exact where the header says)."""
    size = max(info.file_size, 1)
    parameters = info.parameters or int(size * 8 / 4.8)
    layers = info.layers or _guess_layers(parameters)
    vocab = info.vocab_size or DEFAULT_VOCAB
    width = info.embedding_length or _estimated_width(parameters, layers, vocab)
    file_type = info.metadata.get("general.file_type")
    quantization = FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else ""
    return ModelShape(size, parameters, layers, vocab, width, quantization)


def shape_for_size(size_bytes: int) -> ModelShape:
    """A file known only by its size (a Hub listing): about 4.8 bits per weight (Q4_K_M)."""
    parameters = int(max(size_bytes, 1) * 8 / 4.8)
    layers = _guess_layers(parameters)
    return ModelShape(
        max(size_bytes, 1),
        parameters,
        layers,
        DEFAULT_VOCAB,
        _estimated_width(parameters, layers, DEFAULT_VOCAB),
        "Q4_K_M",
    )


# --- what the machine can do ------------------------------------------------------------------


@dataclass(frozen=True)
class MachineProfile:
    """What :func:`calibrate` measured (or, with ``measured`` false, a cautious guess)."""

    read_gbps_1: float
    """Streaming read, one thread, GB/s."""
    read_gbps_n: float
    """Streaming read, ``threads`` threads together, GB/s."""
    threads: int
    gflops_1: float
    """float32 matrix products on one thread, GFLOP/s."""
    measured: bool = True
    measured_at: float = 0.0
    fingerprint: str = ""

    def read_gbps(self, threads: int) -> float:
        """Streaming read with ``threads`` threads, interpolated between the two measurements
        (more threads than measured read no faster: the memory bus is the limit)."""
        if threads <= 1 or self.threads <= 1:
            return self.read_gbps_1
        share = (min(threads, self.threads) - 1) / (self.threads - 1)
        return self.read_gbps_1 + (self.read_gbps_n - self.read_gbps_1) * share

    def compute_gflops(self, threads: int) -> float:
        """Arithmetic with ``threads`` threads: it scales with cores, up to the physical cores
        (hyper-threads share one core's arithmetic units)."""
        return self.gflops_1 * max(1, min(threads, self.threads))


def guessed_profile(hw: Hardware) -> MachineProfile:
    """A profile for a machine not measured yet: a modest laptop with ``hw``'s cores."""
    cores = max(1, hw.physical_cores)
    return MachineProfile(
        read_gbps_1=GUESS_READ_GBPS_PER_THREAD,
        read_gbps_n=min(GUESS_READ_GBPS_PER_THREAD * cores, GUESS_READ_GBPS_MAX),
        threads=cores,
        gflops_1=GUESS_GFLOPS_PER_THREAD,
        measured=False,
        fingerprint=fingerprint(hw),
    )


def fingerprint(hw: Hardware) -> str:
    """A short id of the hardware and engine a profile was measured on: a new processor, more
    memory, another llama.cpp or a GPU build each ask for a new measurement."""
    try:
        engine = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        engine = "none"
    facts = {
        "cpu": _cpu_name(),
        "machine": platform.machine(),
        "physical": hw.physical_cores,
        "logical": hw.logical_cores,
        "ram_gib": round(hw.total_ram / 2**30),
        "gpu": hw.gpu_offload,
        "engine": engine,
    }
    text = json.dumps(facts, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split("\n"):
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def calibrate(hw: Hardware, *, buffer_bytes: int = 128 * 2**20) -> MachineProfile:
    """Measure this machine (under a second): streaming reads of ``buffer_bytes`` (larger than
    any processor cache) on one thread and on one per physical core, and matrix products.

    The best of a few tries counts: a busy moment makes a try slower, never faster.
    """
    import numpy as np  # deferred: numpy is a large import and most commands never measure

    threads = max(1, hw.physical_cores)
    data = np.ones(buffer_bytes // 4, dtype=np.float32)
    data.sum()  # fault the pages in before timing
    parts = np.array_split(data, threads)

    def read_rate(slices: list[Any]) -> float:
        best = 0.0
        for _ in range(3):
            workers = [threading.Thread(target=part.sum) for part in slices]
            started = time.perf_counter()
            for worker in workers:
                worker.start()  # numpy lets go of the GIL while it sums a large array
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
            best = max(best, sum(part.nbytes for part in slices) / elapsed)
        return best / 1e9

    read_1 = read_rate([data])
    read_n = read_rate(parts) if threads > 1 else read_1
    del data, parts
    # Many small products, each below OpenBLAS's threshold for threading: one thread's
    # arithmetic, unlike one large product, whose BLAS threads stall when other programs keep
    # the cores busy (the same stall would then be blamed on every model).
    m, k, n, count = 60, 64, 64, 128
    rng = np.random.default_rng(0)
    a = rng.random((count, m, k), dtype=np.float32)
    b = rng.random((count, k, n), dtype=np.float32)
    best = 0.0
    for _ in range(8):
        started = time.perf_counter()
        np.matmul(a, b)
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - started))
    return MachineProfile(
        read_gbps_1=round(read_1, 3),
        read_gbps_n=round(read_n, 3),
        threads=threads,
        gflops_1=round(best / 1e9, 3),
        measured=True,
        measured_at=time.time(),
        fingerprint=fingerprint(hw),
    )


def load_profile(cache_dir: Path, hw: Hardware) -> MachineProfile | None:
    """The cached measurement of this machine, or None when missing, unreadable or taken on
    other hardware."""
    try:
        data = json.loads((cache_dir / PROFILE_FILE).read_text(encoding="utf-8"))
        if data.get("version") != PROFILE_VERSION:
            return None
        profile = MachineProfile(**data["profile"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if profile.fingerprint != fingerprint(hw) or not profile.measured:
        return None
    return profile


def save_profile(cache_dir: Path, profile: MachineProfile) -> None:
    text = json.dumps({"version": PROFILE_VERSION, "profile": asdict(profile)}, indent=2)
    atomic_write_text(cache_dir / PROFILE_FILE, text + "\n")


def ensure_profile(cache_dir: Path, hw: Hardware) -> MachineProfile:
    """The cached profile, measuring (and caching) one first if there is none for this
    hardware. Blocks for about a second the first time: run it off the GUI thread."""
    profile = load_profile(cache_dir, hw)
    if profile is None:
        profile = calibrate(hw)
        try:
            save_profile(cache_dir, profile)
        except OSError as exc:  # a read-only cache: measure again next time
            log.warning("Could not cache the speed measurement: %s", exc)
    return profile


# --- learning from use ------------------------------------------------------------------------


@dataclass
class Correction:
    """Measured / predicted, for decoding and for reading prompts, on one device."""

    decode: float = 1.0
    prompt: float = 1.0
    decode_samples: int = 0
    prompt_samples: int = 0


@dataclass
class SpeedFactors:
    """This machine's corrections, learnt from real answers and kept in ``speed-factors.json``.

    They belong to one profile: a new measurement (new hardware) starts them afresh.
    """

    profile_id: str = ""
    devices: dict[str, Correction] = field(default_factory=dict)

    def get(self, device: Device) -> Correction:
        return self.devices.get(device, Correction())

    def observe(
        self,
        device: Device,
        *,
        decode_ratio: float | None = None,
        prompt_ratio: float | None = None,
    ) -> Correction:
        """Move the factors toward ``measured / predicted`` ratios (predicted without
        correction); returns the device's new correction."""
        current = replace(self.get(device))
        if decode_ratio is not None and _plausible(decode_ratio):
            current.decode = _blend(current.decode, decode_ratio, current.decode_samples)
            current.decode_samples += 1
        if prompt_ratio is not None and _plausible(prompt_ratio):
            current.prompt = _blend(current.prompt, prompt_ratio, current.prompt_samples)
            current.prompt_samples += 1
        self.devices[device] = current
        return current

    @classmethod
    def load(cls, cache_dir: Path, profile_id: str) -> SpeedFactors:
        """The saved factors for ``profile_id``; fresh ones (all 1.0) if none are saved for it."""
        try:
            data = json.loads((cache_dir / FACTORS_FILE).read_text(encoding="utf-8"))
            if data.get("profile_id") != profile_id:
                return cls(profile_id)
            devices = {name: Correction(**value) for name, value in data["devices"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return cls(profile_id)
        return cls(profile_id, devices)

    def save(self, cache_dir: Path) -> None:
        data = {
            "profile_id": self.profile_id,
            "devices": {name: asdict(value) for name, value in self.devices.items()},
        }
        atomic_write_text(cache_dir / FACTORS_FILE, json.dumps(data, indent=2) + "\n")


def _plausible(ratio: float) -> bool:
    return math.isfinite(ratio) and 1 / RATIO_LIMIT <= ratio <= RATIO_LIMIT


def _blend(factor: float, ratio: float, samples: int) -> float:
    rate = max(LEARNING_RATE_FLOOR, 1 / (samples + 2))
    return math.exp(math.log(factor) + rate * (math.log(ratio) - math.log(factor)))


def profile_id(profile: MachineProfile) -> str:
    return f"{profile.fingerprint}@{profile.measured_at:.0f}"


# --- predictions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedPrediction:
    """Expected tokens per second for one model on this computer."""

    decode_tokens_per_s: float
    prompt_tokens_per_s: float
    device: Device
    measured: bool
    """From a measurement of this computer (not the built-in guess for an unmeasured one)."""
    learnt: bool
    """Corrected by real answers on this computer."""

    @property
    def label(self) -> str:
        """ "≈ 35 tokens/s" (the speed of writing the answer, what people feel)."""
        return f"≈ {format_rate(self.decode_tokens_per_s)} tokens/s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 1),
            "prompt_tokens_per_s": round(self.prompt_tokens_per_s, 1),
            "device": self.device,
            "measured": self.measured,
            "learnt": self.learnt,
        }


def format_rate(tokens_per_s: float) -> str:
    """Two significant figures at most: a prediction is not more precise than that."""
    if tokens_per_s >= 100:
        return f"{round(tokens_per_s, -1):.0f}"
    if tokens_per_s >= 10:
        return f"{tokens_per_s:.0f}"
    return f"{tokens_per_s:.1f}".removesuffix(".0")


def decode_thread_scale(profile: MachineProfile, threads: int) -> float:
    """How many times one thread's decoding speed ``threads`` threads reach (up to the
    physical cores measured: hyper-threads share one core's arithmetic)."""
    return 1.0 + DECODE_THREAD_GAIN * (max(1, min(threads, profile.threads)) - 1)


def raw_rates(shape: ModelShape, profile: MachineProfile, threads: int) -> tuple[float, float]:
    """(decode, prompt) tokens/s from the physics alone, before any learnt correction."""
    scale = decode_thread_scale(profile, threads)
    one_thread = profile.gflops_1 * 1e9
    reading = shape.decode_bytes_per_token / (profile.read_gbps(threads) * 1e9 * DECODE_EFFICIENCY)
    arithmetic = shape.decode_flops_per_token / (one_thread * DECODE_COMPUTE_EFFICIENCY * scale)
    fixed = DECODE_FIXED_GFLOP * 1e9 / (one_thread * scale)
    compute = profile.compute_gflops(threads) * 1e9 * shape.prompt_efficiency
    return 1.0 / (max(reading, arithmetic) + fixed), compute / shape.prompt_flops_per_token


class SpeedEstimator:
    """Predicts tokens/s for models on one machine, with the user's thread count and device.

    ``threads`` is what the engine will use (the ``threads`` setting, 0 = one per physical
    core). ``device`` is "gpu" where the llama.cpp build offloads and offloading is on: the
    prediction is then the CPU's until real answers on the GPU have taught the factor better.
    """

    def __init__(
        self,
        hw: Hardware,
        profile: MachineProfile | None = None,
        factors: SpeedFactors | None = None,
        *,
        threads: int = 0,
        device: Device = "cpu",
    ) -> None:
        self.hardware = hw
        self.profile = profile or guessed_profile(hw)
        self.factors = factors or SpeedFactors(profile_id(self.profile))
        self.threads = threads or max(1, hw.physical_cores)
        self.device = device

    @classmethod
    def from_cache(
        cls, cache_dir: Path, hw: Hardware, *, threads: int = 0, gpu_layers: str = "auto"
    ) -> SpeedEstimator:
        """From what is cached, measuring nothing (a guess where the machine was never
        measured: see :attr:`measured`)."""
        profile = load_profile(cache_dir, hw)
        factors = SpeedFactors.load(cache_dir, profile_id(profile)) if profile else None
        device = device_for(hw, gpu_layers)
        return cls(hw, profile, factors, threads=threads, device=device)

    @classmethod
    def measured_now(
        cls, cache_dir: Path, hw: Hardware, *, threads: int = 0, gpu_layers: str = "auto"
    ) -> SpeedEstimator:
        """Like :meth:`from_cache`, measuring the machine first if it never was (blocks)."""
        profile = ensure_profile(cache_dir, hw)
        factors = SpeedFactors.load(cache_dir, profile_id(profile))
        device = device_for(hw, gpu_layers)
        return cls(hw, profile, factors, threads=threads, device=device)

    @property
    def measured(self) -> bool:
        return self.profile.measured

    def predict(self, shape: ModelShape) -> SpeedPrediction:
        decode, prompt = raw_rates(shape, self.profile, self.threads)
        correction = self.factors.get(self.device)
        return SpeedPrediction(
            decode_tokens_per_s=decode * correction.decode,
            prompt_tokens_per_s=prompt * correction.prompt,
            device=self.device,
            measured=self.profile.measured,
            learnt=bool(correction.decode_samples or correction.prompt_samples),
        )

    def for_spec(self, spec: ModelSpec) -> SpeedPrediction:
        return self.predict(shape_for_spec(spec))

    def for_gguf(self, info: GGUFInfo) -> SpeedPrediction:
        return self.predict(shape_for_gguf(info))

    def for_size(self, size_bytes: int) -> SpeedPrediction:
        return self.predict(shape_for_size(size_bytes))

    def decode_for_spec(self, spec: ModelSpec) -> float:
        """Expected answer-writing tokens/s for ``spec`` (a key for :func:`recommend`)."""
        return self.for_spec(spec).decode_tokens_per_s


def device_for(hw: Hardware, gpu_layers: str | int = "auto") -> Device:
    """Where the engine will run with the ``gpu_layers`` setting on this build."""
    off = str(gpu_layers) in ("off", "0")
    return "gpu" if hw.gpu_offload and not off else "cpu"


class SpeedRecorder:
    """Teaches the per-machine factor from one loaded model's answers.

    Attach one to a loaded engine (``engine.on_stats = SpeedRecorder(...)``): it is called with
    each answer's stats and never raises (a failure to learn must not fail an answer).
    """

    def __init__(
        self, cache_dir: Path, hw: Hardware, shape: ModelShape, *, threads: int, device: Device
    ) -> None:
        self.cache_dir = cache_dir
        self.hardware = hw
        self.shape = shape
        self.threads = threads
        self.device = device
        self._lock = threading.Lock()

    def __call__(self, stats: GenerationStats) -> None:
        try:
            self.record(stats)
        except Exception:  # learning is a bonus; never let it fail an answer
            log.exception("Could not learn from this answer's speed")

    def record(self, stats: GenerationStats) -> Correction | None:
        """Learn from ``stats``; returns the new correction, or None when the answer says
        nothing reliable (too short, stopped, failed)."""
        if stats.stop_reason not in ("stop", "length"):
            return None
        decode = stats.tokens_per_s if stats.completion_tokens >= MIN_DECODE_TOKENS else None
        prompt = None
        if stats.evaluated_prompt_tokens >= MIN_PROMPT_TOKENS and stats.ttft_s:
            prompt = stats.evaluated_prompt_tokens / stats.ttft_s
        if decode is None and prompt is None:
            return None
        with self._lock:
            # Measuring here would hold up the model's thread (and every test that answers);
            # the front ends measure when they first show a prediction.
            profile = load_profile(self.cache_dir, self.hardware)
            if profile is None:
                return None
            raw_decode, raw_prompt = raw_rates(self.shape, profile, self.threads)
            factors = SpeedFactors.load(self.cache_dir, profile_id(profile))
            correction = factors.observe(
                self.device,
                decode_ratio=decode / raw_decode if decode else None,
                prompt_ratio=prompt / raw_prompt if prompt else None,
            )
            factors.save(self.cache_dir)
        return correction


def recorder_for(
    cache_dir: Path, hw: Hardware, info: GGUFInfo, *, threads: int, gpu_layers: str | int
) -> Callable[[GenerationStats], None]:
    """A :class:`SpeedRecorder` for an engine that loaded ``info`` with these settings."""
    return SpeedRecorder(
        cache_dir,
        hw,
        shape_for_gguf(info),
        threads=threads,
        device=device_for(hw, gpu_layers),
    )


# --- what to recommend --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    """The model to offer, and why, in one line."""

    spec: ModelSpec | None
    fits: bool
    """It fits in memory comfortably."""
    usable: bool
    """It is predicted at least as fast as the usable speed."""
    prediction: SpeedPrediction | None
    reason: str


def explain(
    spec: ModelSpec | None,
    prediction: SpeedPrediction | None,
    *,
    fits: bool,
    usable: bool,
    min_tokens_per_s: float,
) -> str:
    """ "Qwen3 1.7B: fits in memory, about 14 tokens/s here"; or why nothing better was found."""
    if spec is None:
        return "The catalog is empty."
    memory = "fits in memory" if fits else "the smallest model; memory is tight"
    if prediction is None:
        return f"{spec.name}: {memory}"
    speed = f"about {format_rate(prediction.decode_tokens_per_s)} tokens/s here"
    if not usable:
        speed += f" (below the usable {format_rate(min_tokens_per_s)}: the fastest that fits)"
    return f"{spec.name}: {memory}, {speed}"


__all__ = [
    "MachineProfile",
    "ModelShape",
    "Recommendation",
    "SpeedEstimator",
    "SpeedFactors",
    "SpeedPrediction",
    "SpeedRecorder",
    "calibrate",
    "ensure_profile",
    "explain",
    "format_rate",
    "recommend_by_speed",
    "recorder_for",
    "shape_for_gguf",
    "shape_for_size",
    "shape_for_spec",
]


def recommend_by_speed(
    catalog: Iterable[ModelSpec],
    estimator: SpeedEstimator,
    *,
    min_tokens_per_s: float,
    n_ctx: int | None = None,
) -> Recommendation:
    """The most capable model that fits in memory and is predicted at least
    ``min_tokens_per_s``; else the fastest that fits; else the smallest (so a small machine is
    still offered something to try, honestly labelled)."""
    specs = list(catalog)
    hw = estimator.hardware
    best = recommend(
        specs, hw, n_ctx, speed=estimator.decode_for_spec, min_tokens_per_s=min_tokens_per_s
    )
    fits, usable = True, True
    if best is None:
        usable = False
        fitting = [s for s in specs if fit_for_spec(s, hw, n_ctx) == "fits"]
        if fitting:
            best = max(fitting, key=lambda s: (estimator.decode_for_spec(s), s.id))
        else:
            fits = False
            best = min(specs, key=lambda s: (s.size_bytes, s.id), default=None)
    prediction = estimator.for_spec(best) if best is not None else None
    reason = explain(best, prediction, fits=fits, usable=usable, min_tokens_per_s=min_tokens_per_s)
    return Recommendation(best, fits, usable, prediction, reason)
