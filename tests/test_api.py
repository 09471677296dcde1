"""The local OpenAI-compatible API as ``offline-assistant serve`` runs it: the real server on
127.0.0.1, the real SmolLM2 model, and the official ``openai`` package as the client (plus raw
HTTP where a client would hide what is checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from assistant.api.engine_queue import EngineQueue
from assistant.api.jobs import JobEvents, Ticket
from assistant.api.protocol import ApiError, ApiModel, ChatJob
from assistant.api.server import ApiServer
from assistant.engine.base import GenerationSettings, GenerationStats
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.providers import ProviderRegistry, ProviderSettings, load_gguf, local_provider
from assistant.settings import Settings

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
TOKEN = "test-token"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
LONG = [SYSTEM, {"role": "user", "content": "Write a long story about a dragon who learns to fly."}]
DEFAULTS = GenerationSettings(temperature=0.0, max_tokens=48, repeat_penalty=1.0)
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Recorder:
    """Wraps a queue and keeps, per job, what the queue reported (in the order it did)."""

    queue: EngineQueue
    log: list[tuple[int, str]] = field(default_factory=list)  # (job number, event)
    stats: dict[int, GenerationStats] = field(default_factory=dict)
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def models(self) -> list[ApiModel]:
        return self.queue.models()

    def generation_defaults(self) -> GenerationSettings:
        return self.queue.generation_defaults()

    def submit(self, job: ChatJob, events: JobEvents) -> Ticket:
        with self._lock:
            self._count += 1
            number = self._count
        return self.queue.submit(job, _Tap(self, number, events))

    def note(self, number: int, event: str) -> None:
        with self._lock:
            self.log.append((number, event))


@dataclass
class _Tap:
    recorder: Recorder
    number: int
    events: JobEvents

    def started(self, model_id: str) -> None:
        self.recorder.note(self.number, "started")
        self.events.started(model_id)

    def text(self, text: str) -> None:
        self.events.text(text)

    def finished(self, stats: GenerationStats) -> None:
        self.recorder.stats[self.number] = stats
        self.recorder.note(self.number, "finished")
        self.events.finished(stats)

    def failed(self, error: ApiError) -> None:
        self.recorder.note(self.number, "failed")
        self.events.failed(error)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Path]:
    """One app home for the module, with the test model installed (loading it once)."""
    folder = tmp_path_factory.mktemp("api-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFFLINE_ASSISTANT_HOME", str(folder))
        ModelStore(app_paths().ensure()).import_file(model_path)
        yield folder


@pytest.fixture(scope="module")
def store(home: Path) -> ModelStore:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFFLINE_ASSISTANT_HOME", str(home))
        return ModelStore(app_paths().ensure())


def start_server(
    store: ModelStore, *, limit: int | None = None, **options: Any
) -> tuple[ApiServer, Recorder]:
    settings = Settings(store.paths.settings_file)
    queue = EngineQueue(store, settings, DEFAULTS, limit=limit, **options)
    recorder = Recorder(queue)
    server = ApiServer(recorder, token=TOKEN, port=0)
    server.start()
    return server, recorder


@pytest.fixture(scope="module")
def served(store: ModelStore) -> Iterator[tuple[ApiServer, Recorder]]:
    server, recorder = start_server(store)
    recorder.queue.preload(MODEL)
    assert recorder.queue.wait_loaded(120)
    yield server, recorder
    server.stop()
    recorder.queue.close()


@pytest.fixture
def server(served: tuple[ApiServer, Recorder]) -> ApiServer:
    return served[0]


@pytest.fixture
def recorder(served: tuple[ApiServer, Recorder]) -> Recorder:
    return served[1]


def client(server: ApiServer, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=token, max_retries=0, timeout=300)


# --- answers ---------------------------------------------------------------------------------


def test_installed_models_are_listed(server: ApiServer) -> None:
    models = client(server).models.list()
    assert [m.id for m in models] == [MODEL]
    assert client(server).models.retrieve(MODEL).id == MODEL


def test_a_whole_answer_names_paris_with_its_usage(server: ApiServer) -> None:
    reply = client(server).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
    )
    choice = reply.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert reply.model == MODEL and reply.object == "chat.completion"
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_streamed_answer_ends_with_its_usage(server: ApiServer) -> None:
    whole = client(server).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
    )
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text and text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[-2:-1]] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert last.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens  # type: ignore[union-attr]


def test_stop_strings_and_max_tokens_end_the_answer(server: ApiServer) -> None:
    openai_client = client(server)
    whole = openai_client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
    )
    text = whole.choices[0].message.content or ""
    stopped = openai_client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        stop=["Paris"],  # type: ignore[arg-type]
    )
    assert stopped.choices[0].message.content == text[: text.index("Paris")]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < whole.usage.completion_tokens  # type: ignore[union-attr]

    short = openai_client.chat.completions.create(
        model=MODEL,
        messages=LONG,
        temperature=0,
        max_tokens=5,  # type: ignore[arg-type]
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 5  # type: ignore[union-attr]


def test_the_same_seed_gives_the_same_answer(server: ApiServer) -> None:
    def sample() -> str:
        reply = client(server).chat.completions.create(
            model=MODEL,
            messages=LONG,  # type: ignore[arg-type]
            temperature=1.2,
            seed=7,
            max_tokens=24,
        )
        return reply.choices[0].message.content or ""

    assert sample() == sample()


# --- errors ----------------------------------------------------------------------------------


def test_a_missing_or_wrong_token_is_refused(server: ApiServer) -> None:
    bare = httpx2.post(f"{server.base_url}/chat/completions", json={"messages": QUESTION})
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"
    assert bare.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        client(server, token="wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(server, token="wrong").chat.completions.create(
            model=MODEL,
            messages=QUESTION,  # type: ignore[arg-type]
        )


def test_an_unknown_model_is_a_404(server: ApiServer) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(server).chat.completions.create(
            model="gpt-4o",
            messages=QUESTION,  # type: ignore[arg-type]
        )
    error = raised.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert MODEL in error["message"]  # says which models there are


def test_bad_requests_say_what_is_wrong(server: ApiServer) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(server).chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=5,  # type: ignore[arg-type]
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == "temperature"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    broken = httpx2.post(
        f"{server.base_url}/chat/completions", content=b"{not json", headers=headers
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    nowhere = httpx2.get(f"{server.base_url}/nowhere", headers=headers)
    assert nowhere.status_code == 404 and "error" in nowhere.json()


def test_a_body_over_the_limit_is_refused(server: ApiServer) -> None:
    huge = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}
    response = httpx2.post(
        f"{server.base_url}/chat/completions",
        json=huge,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_request_for_another_host_name_is_refused(server: ApiServer) -> None:
    """A web page cannot reach the API by pointing its own domain at 127.0.0.1."""
    response = httpx2.get(
        f"{server.base_url}/models",
        headers={"Authorization": f"Bearer {TOKEN}", "Host": "evil.example:8765"},
    )
    assert response.status_code == 400


# --- clients that leave, many clients, a full queue, a model loading -------------------------


def test_a_client_leaving_mid_stream_frees_the_model_at_once(
    server: ApiServer, recorder: Recorder
) -> None:
    before = len(recorder.log)
    body = {"model": MODEL, "messages": LONG, "max_tokens": 2000, "stream": True}
    with httpx2.stream(
        "POST",
        f"{server.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=300,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        seen = [line for _, line in zip(range(6), lines, strict=False) if line]
        assert seen[0].startswith("data: ")
    # The connection is closed: the next request is answered, and the one before was stopped
    # at once (far short of its 2000 tokens) rather than written to the end for nobody.
    reply = client(server).chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    numbers = sorted({n for n, _ in recorder.log[before:]})
    left, after = numbers[0], numbers[-1]
    assert recorder.stats[left].stop_reason == "cancelled"
    assert recorder.stats[left].completion_tokens < 200
    assert recorder.stats[after].stop_reason == "stop"
    # The slot is given back on the queue's thread just after the last byte is sent.
    deadline = time.monotonic() + 10
    while recorder.queue._slots.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorder.queue._slots.held == 0


def test_eight_clients_at_once_are_all_answered_in_turn(
    server: ApiServer, recorder: Recorder
) -> None:
    before = len(recorder.log)
    results: dict[int, str] = {}
    failures: list[BaseException] = []

    def ask(number: int) -> None:
        try:
            reply = client(server).chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Say the number {number}."}],  # type: ignore[list-item]
                temperature=0,
                max_tokens=12,
                stream=number % 2 == 0,
            )
            if isinstance(reply, openai.Stream):
                results[number] = "".join(
                    c.choices[0].delta.content or "" for c in reply if c.choices
                )
            else:
                results[number] = reply.choices[0].message.content or ""
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failures == []
    assert sorted(results) == list(range(8)) and all(results.values())
    events = [event for _, event in recorder.log[before:]]
    assert events == ["started", "finished"] * 8  # one at a time on the one model


def gated(store: ModelStore, gate: threading.Event) -> ProviderRegistry:
    """The local provider, whose loading waits for ``gate``: a job held at a known point."""

    def slow_load(path: Path, settings: ProviderSettings, model_id: str) -> Any:
        gate.wait(60)
        return load_gguf(path, settings, model_id)

    return ProviderRegistry([local_provider(store, slow_load)])


def test_a_full_queue_is_a_429(store: ModelStore) -> None:
    gate = threading.Event()
    server, recorder = start_server(store, limit=1, providers=gated(store, gate))
    try:
        replies: list[Any] = []
        first = threading.Thread(
            target=lambda: replies.append(
                client(server).chat.completions.create(
                    model=MODEL,
                    messages=QUESTION,
                    temperature=0,  # type: ignore[arg-type]
                )
            )
        )
        first.start()  # it takes the one place, and holds it while the model loads
        while recorder._count == 0:
            first.join(0.05)
        with pytest.raises(openai.RateLimitError) as raised:
            client(server).chat.completions.create(
                model=MODEL,
                messages=QUESTION,  # type: ignore[arg-type]
            )
        assert raised.value.response.headers["retry-after"] == "1"
        gate.set()
        first.join(300)
        assert "Paris" in (replies[0].choices[0].message.content or "")
    finally:
        gate.set()
        server.stop()
        recorder.queue.close()


def test_requests_while_the_model_loads_get_a_503(store: ModelStore) -> None:
    gate = threading.Event()
    server, recorder = start_server(store, providers=gated(store, gate))
    try:
        recorder.queue.preload(MODEL)
        with pytest.raises(openai.InternalServerError) as raised:
            client(server).chat.completions.create(
                model=MODEL,
                messages=QUESTION,  # type: ignore[arg-type]
            )
        assert raised.value.status_code == 503
        assert raised.value.response.headers["retry-after"] == "2"
        gate.set()
        assert recorder.queue.wait_loaded(120)
        reply = client(server).chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=0,  # type: ignore[arg-type]
        )
        assert "Paris" in (reply.choices[0].message.content or "")
    finally:
        gate.set()
        server.stop()
        recorder.queue.close()


# --- the serve command -----------------------------------------------------------------------


def _run_cli(*args: str, home: Path, **options: Any) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OFFLINE_ASSISTANT_HOME=str(home),
        PYTHON_KEYRING_BACKEND="tests.keyring_backend.MemoryKeyring",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "assistant", *args],
        env=env,
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--host", "0.0.0.0"], "--allow-network"),
        (["--host", "192.168.1.20"], "--allow-network"),
        (["--host", "0.0.0.0", "--allow-network", "--no-token"], "without a token"),
    ],
)
def test_serve_refuses_the_network_without_the_flag_and_a_token(
    home: Path, args: list[str], said: str
) -> None:
    process = _run_cli("serve", *args, home=home)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Refusing to listen" in err and said in err
    assert "Local API" not in out  # nothing was started


def test_serve_as_a_new_user_tries_it(home: Path) -> None:
    """`offline-assistant serve`, then the openai client with the base URL and token it shows."""
    process = _run_cli("serve", "--port", "0", home=home)
    try:
        assert process.stdout is not None
        shown: dict[str, str] = {}
        for line in process.stdout:
            if line.startswith("Local API:"):
                shown["url"] = line.split()[-1]
            elif line.startswith("Token:"):
                shown["token"] = line.split()[-1]
            elif line.startswith("Ready"):
                break
        stream = openai.OpenAI(
            base_url=shown["url"], api_key=shown["token"], max_retries=0
        ).chat.completions.create(
            model=MODEL,
            messages=QUESTION,  # type: ignore[arg-type]
            temperature=0,
            stream=True,
        )
        assert "Paris" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert httpx2.get(shown["url"] + "/models").status_code == 401  # no token
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=shown["url"], api_key="guess", max_retries=0).models.list()
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_serve_does_not_load_qt() -> None:
    code = (
        "import sys; from assistant.cli import build_parser, serve_cmd; "
        "import assistant.api.server, assistant.api.engine_queue; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('PySide6'))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(found.stdout) == []
