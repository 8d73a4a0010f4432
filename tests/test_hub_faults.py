"""A Hub with no route, a flaky Hub and a full disk, simulated locally.

Downloads go through the real hf_hub_download to a fake Hub on loopback. Only loopback
exists here: any other host name fails to resolve, as with no DNS. Every connection
opened and every pause taken is recorded, and no pause is slept. A full disk is an
ENOSPC raised by a wrapped write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub import file_download
from safetensors import SafetensorError

import emojilm
from emojilm import checkpoint
from emojilm.checkpoint import CheckpointError
from emojilm.sources import ModelRegistry, SourceConfig
from tests.conftest import hub_snapshot

REPO = "chili-lab/Tiny-ByteLM"
COMMIT = "c0ffee" * 6 + "abcd"
# The pauses docs/reliability.md documents. A metadata request (HEAD) failing: huggingface_hub's
# first try, then a round of tries with these pauses between them. A download (GET) answering 5xx:
# ours, before each new try. A transfer cut: huggingface_hub's, before each resume.
HEAD_RETRY_WAITS = [1, 2, 4, 8, 8]
GET_5XX_WAITS = [1, 2, 4]
RESUME_WAIT = 1  # at most 5 resumes in a row without progress


class FakeHub(BaseHTTPRequestHandler):
    """Serves /<repo>/resolve/<rev>/<file> from `files` with HEAD and ranged GET, as the Hub does.

    `faults[(method, file)]` lists what the next requests of that kind get instead of an answer,
    one each, in order: a status (e.g. 503); "silence" (no answer until the client gives up);
    or ("cut", n): n bytes of the body, then the connection closes.
    """

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str, str | None]]] = []  # (method, file, Range header)
    faults: ClassVar[dict[tuple[str, str], list]] = {}
    hang_up: ClassVar[threading.Event]  # ends every silence when the test is over

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _file(self) -> tuple[str, bytes | None]:
        name = self.path.rsplit("/", 1)[-1]
        return name, self.files.get(name)

    def _fault(self, method: str, name: str):
        pending = self.faults.get((method, name))
        return pending.pop(0) if pending else None

    def _headers(self, body: bytes | None, status: int, length: int) -> None:
        self.send_response(status)
        if body is None:
            self.send_header("X-Error-Code", "EntryNotFound")
        else:
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _answer(self, method: str) -> tuple[str, bytes | None, object] | None:
        """Record the request and serve its fault; returns what is left to answer, if anything."""
        name, body = self._file()
        self.requests.append((method, name, self.headers.get("Range")))
        fault = self._fault(method, name)
        if fault == "silence":
            self.hang_up.wait(30)
            self.close_connection = True
            return None
        if isinstance(fault, int):
            self.send_response(fault)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return name, body, fault

    def do_HEAD(self) -> None:
        if (answer := self._answer("HEAD")) is not None:
            _, body, _ = answer
            self._headers(body, 200 if body is not None else 404, len(body or b""))

    def do_GET(self) -> None:
        if (answer := self._answer("GET")) is None:
            return
        _, body, fault = answer
        if body is None:
            self._headers(None, 404, 0)
            return
        wanted = self.headers.get("Range")
        start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted else 0
        part = body[start:]
        self._headers(body, 206 if start else 200, len(part))
        if fault is not None:  # ("cut", n)
            self.wfile.write(part[: fault[1]])
            self.close_connection = True
            return
        self.wfile.write(part)


def use_endpoint(monkeypatch, url: str) -> None:
    """Point huggingface_hub at `url`, as HF_ENDPOINT does when it is imported."""
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def network(monkeypatch):
    """Loopback only, online mode; records connections opened (host, port) and pauses (seconds)."""
    record = SimpleNamespace(connects=[], sleeps=[])
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):  # what the route check and the HTTP client call
        record.connects.append(address)
        return real_connect(address, *args, **kwargs)

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(time, "sleep", record.sleeps.append)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    use_endpoint(monkeypatch, "https://huggingface.co")
    return record


def pth_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("params.json", "consolidated.pth")}


@pytest.fixture
def fake_hub(monkeypatch, network, make_checkpoint):
    """A fake Hub on loopback serving one tiny lingua checkpoint; yields (files, state, handler)."""
    folder, state = make_checkpoint()
    files = pth_bytes(folder)
    hang_up = threading.Event()
    handler = type("Hub", (FakeHub,), {"files": files, "requests": [], "faults": {}, "hang_up": hang_up})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{server.server_port}")
    try:
        yield files, state, handler
    finally:
        hang_up.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_same_weights(folder: Path, state: dict[str, torch.Tensor]) -> None:
    loaded, _ = checkpoint.read_state_dict(folder)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_download_reports_its_progress(fake_hub):
    files, state, _ = fake_hub
    reports = []
    resolved = checkpoint.resolve(REPO, progress=lambda *report: reports.append(report))
    assert resolved.revision == COMMIT
    size = len(files["consolidated.pth"])
    pth = [(done, total) for name, done, total in reports if name == "consolidated.pth"]
    assert pth[0] == (0, size) and pth[-1] == (size, size)
    assert [done for done, _ in pth] == sorted(done for done, _ in pth)  # only grows
    assert {name for name, *_ in reports} == {"params.json", "consolidated.pth"}
    assert_same_weights(resolved.folder, state)


def test_an_interrupted_download_resumes_where_it_stopped(fake_hub, network, monkeypatch):
    files, state, handler = fake_hub
    size = len(files["consolidated.pth"])
    # hf_hub_download keeps what it received in whole chunks (10 MB on the real Hub): make them small here.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    handler.faults[("GET", "consolidated.pth")] = [("cut", size // 3)]
    reports = []
    resolved = checkpoint.resolve(REPO, progress=lambda *report: reports.append(report))

    gets = [wanted for method, name, wanted in handler.requests if method == "GET" and name == "consolidated.pth"]
    assert len(gets) == 2 and gets[0] is None
    resumed_at = int(gets[1].removeprefix("bytes=").removesuffix("-"))  # the retry asks only for the rest
    assert size // 3 - 16 * 1024 < resumed_at <= size // 3
    assert network.sleeps == [RESUME_WAIT]
    assert reports[-1] == ("consolidated.pth", size, size)
    assert_same_weights(resolved.folder, state)


def test_a_transfer_cut_again_and_again_without_progress_gives_up(fake_hub, network):
    _, _, handler = fake_hub
    handler.faults[("GET", "consolidated.pth")] = [("cut", 0)] * 10
    with pytest.raises(
        CheckpointError, match=rf"^cannot download {REPO!r} \(revision main\) from the Hub: peer closed"
    ):
        checkpoint.resolve(REPO)
    gets = [name for method, name, _ in handler.requests if method == "GET" and name == "consolidated.pth"]
    assert len(gets) == 6 and network.sleeps == [RESUME_WAIT] * 5  # the first try and 5 resumes in a row


def cached_note(reason: str) -> str:
    """The one line said when the cached copy of REPO's main branch stands in for the Hub."""
    return f"using the cached copy of {REPO} (revision main, commit {COMMIT[:12]}): the Hub is offline ({reason})"


@pytest.mark.parametrize("route", ["no DNS", "refused", "silent", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("cached", [True, False], ids=["cached", "not-cached"])
def test_without_a_route_to_the_hub_the_cache_is_read_at_once(
    network, monkeypatch, make_checkpoint, hf_cache, caplog, route, cached
):
    hang_up = threading.Event()
    if route == "no DNS":  # the network fixture resolves loopback only
        tried, reason = [("huggingface.co", 443)], "huggingface.co cannot be resolved"
    elif route == "refused":
        port = closed_port()
        use_endpoint(monkeypatch, f"http://127.0.0.1:{port}")
        tried, reason = [("127.0.0.1", port)], f"127.0.0.1:{port} refused the connection"
    elif route == "silent":  # a firewall that drops packets: the lookup (or connect) never ends
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: hang_up.wait(30) and [])
        monkeypatch.setattr(checkpoint, "ROUTE_TIMEOUT_S", 0.05)
        tried, reason = [("huggingface.co", 443)], "huggingface.co:443 did not answer within 0.05 s"
    else:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
        tried, reason = [], "HF_HUB_OFFLINE is set"
    folder, state = make_checkpoint()
    if cached:
        hub_snapshot(hf_cache, REPO, pth_bytes(folder), COMMIT)
    try:
        with caplog.at_level(logging.INFO):
            if cached:
                resolved = checkpoint.resolve(REPO)
            else:
                with pytest.raises(CheckpointError) as caught:
                    checkpoint.resolve(REPO)
    finally:
        hang_up.set()

    assert network.connects == tried  # the route check's alone: huggingface_hub sent no request
    assert network.sleeps == []
    said = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    if cached:
        note = cached_note(reason)
        assert (resolved.revision, resolved.note) == (COMMIT, note)
        assert resolved.folder == hf_cache / "models--chili-lab--Tiny-ByteLM" / "snapshots" / COMMIT
        assert said == [note]  # one line, no retry log
        assert_same_weights(resolved.folder, state)
    else:
        assert str(caught.value) == (
            f"the Hub is offline ({reason}), and {REPO!r} (revision main) is not in the local Hugging Face cache "
            f"({hf_cache})"
        )
        assert said == []


@pytest.mark.parametrize("revision", ["v2", "0123456789" * 4])
def test_a_pinned_revision_missing_from_the_cache_is_an_error_not_another_revision(
    network, make_checkpoint, hf_cache, revision
):
    folder, _ = make_checkpoint()
    hub_snapshot(hf_cache, REPO, pth_bytes(folder), COMMIT)  # main is cached, the pinned revision is not
    with pytest.raises(CheckpointError) as caught:
        checkpoint.resolve(REPO, revision)
    assert str(caught.value) == (
        f"the Hub is offline (huggingface.co cannot be resolved), and {REPO!r} (revision {revision}) is not in the "
        f"local Hugging Face cache ({hf_cache})"
    )
    assert checkpoint.resolve(REPO, COMMIT).folder.name == COMMIT  # the cached commit itself, pinned, is served


def test_the_route_check_follows_hf_endpoint_and_the_proxy_the_client_would_use(network, monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        use_endpoint(monkeypatch, f"http://127.0.0.1:{port}")
        assert checkpoint.hub_offline() is None
        use_endpoint(monkeypatch, "https://huggingface.co")
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        assert checkpoint.hub_offline() is None
        monkeypatch.setenv("no_proxy", "huggingface.co")
        assert checkpoint.hub_offline() == "huggingface.co cannot be resolved"
    assert network.connects == [("127.0.0.1", port), ("127.0.0.1", port), ("huggingface.co", 443)]


def test_a_slow_hub_is_waited_for_not_taken_for_offline(fake_hub, network):
    _, state, handler = fake_hub
    handler.faults[("HEAD", "params.json")] = ["silence"]
    resolved = checkpoint.resolve(REPO, timeout=0.3)
    heads = [name for method, name, _ in handler.requests if method == "HEAD"]
    # No answer within 0.3 s; huggingface_hub then asks again at once, waiting up to 60 s, and is answered.
    assert heads.count("params.json") == 2 and network.sleeps == []
    assert (resolved.revision, resolved.note) == (COMMIT, "")
    assert_same_weights(resolved.folder, state)


@pytest.mark.parametrize("failures", [1, 3, 7])
def test_a_hub_answering_5xx_is_asked_again_after_documented_waits(fake_hub, network, failures):
    _, state, handler = fake_hub
    handler.faults[("HEAD", "params.json")] = [503] * failures
    attempts = 2 + len(HEAD_RETRY_WAITS)  # the first try, then huggingface_hub's retrying round
    if failures < attempts:
        resolved = checkpoint.resolve(REPO)
        assert_same_weights(resolved.folder, state)
    else:
        with pytest.raises(
            CheckpointError, match=r"no usable answer from the Hub after its retries \(Server error '503 "
        ):
            checkpoint.resolve(REPO)
    heads = [name for method, name, _ in handler.requests if method == "HEAD"]
    assert heads.count("params.json") == min(failures + 1, attempts)
    assert network.sleeps == HEAD_RETRY_WAITS[: failures - 1]


@pytest.mark.parametrize("failures", [2, 4])
def test_a_download_answering_5xx_is_asked_again_after_documented_waits(fake_hub, network, failures):
    _, state, handler = fake_hub
    handler.faults[("GET", "consolidated.pth")] = [503] * failures
    if failures <= len(GET_5XX_WAITS):
        resolved = checkpoint.resolve(REPO)
        assert_same_weights(resolved.folder, state)
    else:
        with pytest.raises(
            CheckpointError, match=rf"^cannot download {REPO!r} \(revision main\) from the Hub: Server error '503 "
        ):
            checkpoint.resolve(REPO)
    gets = [name for method, name, _ in handler.requests if method == "GET"]
    assert gets.count("consolidated.pth") == min(failures + 1, len(GET_5XX_WAITS) + 1)
    assert network.sleeps == GET_5XX_WAITS[:failures]


class FullDisk:
    """A file whose disk fills up after `room` bytes."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def test_a_full_disk_while_downloading_is_a_clear_error(fake_hub, monkeypatch):
    files, _, _ = fake_hub
    real_http_get = file_download.http_get
    monkeypatch.setattr(
        file_download, "http_get", lambda url, temp_file, **kw: real_http_get(url, FullDisk(temp_file, 1000), **kw)
    )
    with pytest.raises(CheckpointError) as caught:
        checkpoint.resolve(REPO)
    mb = -(-len(files["consolidated.pth"]) // 1_000_000)
    assert str(caught.value) == (
        f"disk full: need {mb} MB in {hf_constants.HF_HUB_CACHE} to download {REPO!r} (revision main)"
    )
    assert not list(Path(hf_constants.HF_HUB_CACHE).rglob("*.incomplete"))  # no half file left behind


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),  # what it raises
    ],
    ids=["oserror", "safetensors-error"],
)
def test_a_full_disk_while_caching_the_conversion_still_loads(make_checkpoint, monkeypatch, caplog, error):
    folder, state = make_checkpoint()

    def save_file(tensors, filename):
        Path(filename).write_bytes(b"half a file")
        raise error

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    with pytest.raises(CheckpointError, match=r"^disk full: need 1 MB in \S+converted\S+ to cache the converted"):
        checkpoint._save_atomic(state, checkpoint.converted_path(folder / "consolidated.pth"))

    with caplog.at_level(logging.WARNING, logger="emojilm.checkpoint"):
        lm = emojilm.load(folder, probe=False)
    assert "disk full: need 1 MB in" in caplog.text and "without caching" in caplog.text
    assert lm.info.weights.startswith("consolidated.pth (not cached: disk full")
    assert lm.model.tok_embeddings.weight.equal(state["tok_embeddings.weight"])
    converted = checkpoint.converted_path(folder / "consolidated.pth")
    assert not converted.exists() and not list(converted.parent.glob("*.tmp"))


def test_the_command_line_uses_a_cached_copy_at_once_with_one_note(make_checkpoint, hf_cache):
    """The whole command as a person runs it, HF_ENDPOINT set and the Hub refusing connections."""
    folder, _ = make_checkpoint()
    hub_snapshot(hf_cache, REPO, pth_bytes(folder), COMMIT)
    port = closed_port()
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE" and "proxy" not in key.lower()}
    env |= {"HF_HUB_CACHE": str(hf_cache), "HF_ENDPOINT": f"http://127.0.0.1:{port}", "EMOJILM_REPO": REPO}
    command = [sys.executable, "-m", "emojilm", "--json", "--draft-loops", "0", "I love pizza"]
    run = subprocess.run(command, capture_output=True, text=True, env=env | {"OMP_NUM_THREADS": "1"}, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [cached_note(f"127.0.0.1:{port} refused the connection")]
    record = json.loads(run.stdout)
    assert (record["settings"]["model"], record["settings"]["revision"]) == (REPO, COMMIT)
    expected = emojilm.load(folder).translate("I love pizza", max_new_tokens=record["settings"]["max_new"])
    assert record["output"] == expected.text


def test_the_app_starts_on_the_cached_copy_and_says_so(make_checkpoint, hf_cache):
    folder, _ = make_checkpoint()
    hub_snapshot(hf_cache, REPO, pth_bytes(folder), COMMIT)
    registry = ModelRegistry(SourceConfig(hub_repo=REPO, hub_wait_s=60))
    assert registry.start() == REPO
    note = cached_note("HF_HUB_OFFLINE is set")
    assert registry.status(REPO) == f"{REPO} is ready: {note}."
    assert registry.page_state(REPO, chosen=False).note == f"{REPO} is ready: {note}."
