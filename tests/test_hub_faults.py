"""A flaky Hub and a full disk, simulated locally: downloads go to a fake Hub on loopback
through the real hf_hub_download; a full disk is an ENOSPC raised by a wrapped write."""

from __future__ import annotations

import errno
import hashlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub import file_download
from safetensors import SafetensorError

import emojilm
from emojilm import checkpoint
from emojilm.checkpoint import CheckpointError

REPO = "chili-lab/Tiny-ByteLM"
COMMIT = "c0ffee" * 6 + "abcd"


class FakeHub(BaseHTTPRequestHandler):
    """Serves /<repo>/resolve/<rev>/<file> from `files` with HEAD and ranged GET, as the Hub does.

    While `drop_after` is set, the next GET of a large file sends that many bytes and then
    closes the connection, like a network that fails mid-download.
    """

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str, str | None]]] = []  # (method, file, Range header)
    drop_after: int | None = None

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _file(self) -> tuple[str, bytes | None]:
        name = self.path.rsplit("/", 1)[-1]
        return name, self.files.get(name)

    def _headers(self, name: str, body: bytes | None, status: int, length: int) -> None:
        self.send_response(status)
        if body is None:
            self.send_header("X-Error-Code", "EntryNotFound")
        else:
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_HEAD(self) -> None:
        name, body = self._file()
        self.requests.append(("HEAD", name, None))
        self._headers(name, body, 200 if body is not None else 404, len(body or b""))

    def do_GET(self) -> None:
        name, body = self._file()
        wanted = self.headers.get("Range")
        self.requests.append(("GET", name, wanted))
        if body is None:
            self._headers(name, None, 404, 0)
            return
        start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted else 0
        part = body[start:]
        self._headers(name, body, 206 if start else 200, len(part))
        if self.drop_after is not None and len(part) > self.drop_after:
            self.wfile.write(part[: self.drop_after])
            type(self).drop_after = None
            self.close_connection = True
            return
        self.wfile.write(part)


@pytest.fixture
def fake_hub(monkeypatch, make_checkpoint):
    """A fake Hub on loopback serving one tiny lingua checkpoint; yields (files, state, handler)."""
    folder, state = make_checkpoint()
    files = {name: (folder / name).read_bytes() for name in ("params.json", "consolidated.pth")}
    handler = type("Hub", (FakeHub,), {"files": files, "requests": [], "drop_after": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(file_download.time, "sleep", lambda s: None)  # its retry pause
    try:
        yield files, state, handler
    finally:
        server.shutdown()
        server.server_close()


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


def test_an_interrupted_download_resumes_where_it_stopped(fake_hub, monkeypatch):
    files, state, handler = fake_hub
    size = len(files["consolidated.pth"])
    # hf_hub_download keeps what it received in whole chunks (10 MB on the real Hub): make them small here.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    handler.drop_after = size // 3
    reports = []
    resolved = checkpoint.resolve(REPO, progress=lambda *report: reports.append(report))

    gets = [wanted for method, name, wanted in handler.requests if method == "GET" and name == "consolidated.pth"]
    assert len(gets) == 2 and gets[0] is None
    resumed_at = int(gets[1].removeprefix("bytes=").removesuffix("-"))  # the retry asks only for the rest
    assert size // 3 - 16 * 1024 < resumed_at <= size // 3
    assert reports[-1] == ("consolidated.pth", size, size)
    assert_same_weights(resolved.folder, state)


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
