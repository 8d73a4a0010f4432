"""Find, convert, validate and load checkpoints.

A source is a Hub repo id, a local folder, or "bundled". A folder holds
params.json plus either model.safetensors or lingua's consolidated.pth
(`torch.save({"model": state_dict, "optim": ...})`). A .pth is opened with
`weights_only=True` and memory-mapped, so no code is unpickled and the optimizer
state is never read into memory; its weights are converted once to a
safetensors file in our cache, which later starts map straight from disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import pickle
import re
import socket
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from emojilm.config import ModelArgs
from emojilm.model import LoopedTransformer
from emojilm.paths import BUNDLED_DIR

log = logging.getLogger(__name__)

PARAMS = "params.json"
SAFETENSORS = "model.safetensors"
CONSOLIDATED = "consolidated.pth"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# Called while a Hub file downloads: (file name, bytes written so far, file size or None).
Progress = Callable[[str, int, int | None], None]
# The Hub counts as reachable when a TCP connection to it (or to the proxy that leads to it) opens
# within this many seconds. Otherwise only the local Hugging Face cache is read: a missing DNS name or
# a refused connection does not heal in the time huggingface_hub would spend retrying (docs/reliability.md,
# "Without the Hub, and with a flaky Hub").
ROUTE_TIMEOUT_S = 2.0
# Waits before asking again for a file whose download (GET) answered 5xx: huggingface_hub retries
# its metadata request (HEAD) on those, but not the download itself.
SERVER_ERROR_WAITS_S = (1.0, 2.0, 4.0)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says what is wrong with it."""


@dataclass
class Resolved:
    """Where a source's files are, and what to call it."""

    folder: Path
    source: str
    revision: str | None = None  # the Hub commit, when it came from the Hub
    note: str = ""  # said once when it matters: a cached copy used because the Hub is offline


def cache_dir() -> Path:
    return Path(os.environ.get("EMOJILM_CACHE", Path.home() / ".cache" / "emojilm"))


def resolve(
    source: str | os.PathLike, revision: str | None = None, *, timeout: float = 10.0, progress: Progress | None = None
) -> Resolved:
    """Turn a source into a local folder, downloading from the Hub only what is needed."""
    if str(source) == "bundled":
        if not (BUNDLED_DIR / PARAMS).is_file():
            raise CheckpointError(f"the bundled model is missing: no {PARAMS} in {BUNDLED_DIR}")
        return Resolved(BUNDLED_DIR, "bundled")
    path = Path(source).expanduser()
    if path.is_dir():
        return Resolved(path, str(path))
    if path.exists():
        raise CheckpointError(f"{source} is a file; give the folder that holds {PARAMS}")
    if not _HUB_ID.match(str(source)):
        raise CheckpointError(f"{source!r} is neither a folder, 'bundled', nor a Hub repo id (owner/name)")
    return _download(str(source), revision, timeout, progress)


def hub_offline(timeout: float | None = None) -> str | None:
    """Why the Hub cannot be used now, in a few words; None when a connection to it opens.

    Follows huggingface_hub's own settings: HF_HUB_OFFLINE, HF_ENDPOINT, and the proxy its
    HTTP client takes from the environment (HTTPS_PROXY, ALL_PROXY, NO_PROXY).
    """
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    timeout = ROUTE_TIMEOUT_S if timeout is None else timeout
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(endpoint.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        endpoint = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        host, port = endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        return f"{endpoint.geturl()!r} is not a usable address"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except socket.gaierror:
            outcome.append(f"{host} cannot be resolved")
        except ConnectionRefusedError:
            outcome.append(f"{host}:{port} refused the connection")
        except OSError as err:
            outcome.append(f"no connection to {host}:{port}: {err.strerror or err}")

    # A DNS lookup takes no timeout: wait for the thread instead, and let a stuck lookup end on its own.
    thread = threading.Thread(target=connect, name="hub route check", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


def _download(repo_id: str, revision: str | None, timeout: float, progress: Progress | None) -> Resolved:
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    offline = hub_offline()  # then the cache is read at once, with no network retries to wait for
    sizes: dict[str, tuple[int, int | None]] = {}  # per file: (bytes written, size), as last reported

    def fetch(filename: str) -> Path:
        def report(done: int, total: int | None) -> None:
            sizes[filename] = (done, total)
            if progress is not None:
                progress(filename, done, total)

        bar = _reporting_bar(report)
        waits = iter(SERVER_ERROR_WAITS_S)
        while True:
            try:
                path = hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    etag_timeout=timeout,
                    tqdm_class=bar,
                    local_files_only=offline is not None,
                )
                return Path(path)
            except HfHubHTTPError as err:
                status = getattr(err.response, "status_code", 0)
                wait = next(waits, None) if status >= 500 else None
                if wait is None:
                    raise
                log.warning("the Hub answered %s for %s; asking again in %g s", status, filename, wait)
                time.sleep(wait)

    where = f"{repo_id!r} (revision {revision or 'main'})"
    try:
        params = fetch(PARAMS)
        try:  # prefer a published safetensors file; the card's checkpoint is a .pth
            fetch(SAFETENSORS)
        except EntryNotFoundError:  # not on the Hub, or (offline) not in the cache
            fetch(CONSOLIDATED)
    except LocalEntryNotFoundError as err:
        if offline:
            raise CheckpointError(
                f"the Hub is offline ({offline}), and {where} is not in the local Hugging Face cache "
                f"({constants.HF_HUB_CACHE})"
            ) from err
        raise CheckpointError(
            f"cannot download {where}: no usable answer from the Hub after its retries "
            f"({_first_line(err.__cause__ or err)}), and the files are not in the local Hugging Face cache"
        ) from err
    except Exception as err:
        if _disk_full(err):
            # The file being written reported last; hf_hub_download deletes its partial copy, so all of it is needed.
            done, size = next(reversed(sizes.values()), (0, None))
            folder = Path(err.filename).parent if getattr(err, "filename", None) else Path(constants.HF_HUB_CACHE)
            raise CheckpointError(f"{_disk_full_message(size or done, folder)} to download {where}") from err
        # An unknown/gated repo, a missing file, an HTTP error, a transfer cut too often without progress.
        if isinstance(err, (OSError, ValueError, EntryNotFoundError, httpx2.HTTPError)):
            raise CheckpointError(f"cannot download {where} from the Hub: {_first_line(err)}") from err
        raise
    commit = params.parent.name  # hub cache layout: snapshots/<commit>/<file>
    note = ""
    if offline:
        named = "" if revision == commit else f"revision {revision or 'main'}, "
        note = f"using the cached copy of {repo_id} ({named}commit {commit[:12]}): the Hub is offline ({offline})"
        log.warning("%s", note)
    return Resolved(params.parent, repo_id, revision=commit, note=note)


def _reporting_bar(report: Callable[[int, int | None], None]) -> type:
    """A tqdm class for hf_hub_download that also reports the bytes written to `report`.

    It subclasses huggingface_hub's own bar, so the console shows what it always did.
    Defining update_transfer makes a Xet download drive a single bar (bytes written)
    instead of two, one of them counting network bytes.
    """
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ReportingBar(hf_tqdm):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.written = kwargs.get("initial") or 0  # tqdm stops counting when the bar is disabled
            report(self.written, self.total)

        def update(self, n: float | None = 1) -> bool | None:
            self.written += n or 0
            report(self.written, self.total)
            return super().update(n)

        def update_transfer(self, n: int) -> None:
            pass

        def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            pass

    return ReportingBar


def _disk_full(err: BaseException) -> bool:
    # safetensors and hf_xet (Rust) turn ENOSPC into their own exceptions, keeping only the message.
    return getattr(err, "errno", None) == errno.ENOSPC or "os error 28" in str(err)


def _disk_full_message(need_bytes: int, folder: Path) -> str:
    return f"disk full: need {max(1, math.ceil(need_bytes / 1e6)):,} MB in {folder}"


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of a folder and a line saying where they came from.

    model.safetensors is used when present; else consolidated.pth is converted
    once into the cache (rebuilt if that copy turns out to be corrupt).
    """
    if (folder / SAFETENSORS).is_file():
        return _load_safetensors(folder / SAFETENSORS), SAFETENSORS
    pth = folder / CONSOLIDATED
    if not pth.is_file():
        raise CheckpointError(f"{folder} holds neither {SAFETENSORS} nor {CONSOLIDATED}")
    converted = converted_path(pth)
    if converted.is_file():
        try:
            return _load_safetensors(converted), f"{CONSOLIDATED} (cached conversion {converted})"
        except CheckpointError as err:
            log.warning("conversion cache %s is corrupt (%s); rebuilding it", converted, err)
    state = read_consolidated(pth)
    try:
        _save_atomic(state, converted)
    except CheckpointError as err:  # the cache only speeds up later starts: serve the weights read anyway
        log.warning("%s; serving %s without caching its conversion", err, pth)
        return state, f"{CONSOLIDATED} (not cached: {err})"
    # Read back from the cache rather than keep the .pth in one mapping (see _load_safetensors).
    return _load_safetensors(converted), f"{CONSOLIDATED} (converted to {converted})"


def weights_file(folder: Path) -> Path:
    """The file read_state_dict reads: model.safetensors, else consolidated.pth."""
    return folder / SAFETENSORS if (folder / SAFETENSORS).is_file() else folder / CONSOLIDATED


def format_cache(folder: Path, name: str) -> Path:
    """Where a folder's weights converted to another format (or a verdict about them) are cached,
    keyed by the weights file's identity like `converted_path`."""
    return cache_dir() / "converted" / file_key(weights_file(folder)) / name


def read_format_cache(folder: Path, weight_format: str) -> dict[str, torch.Tensor] | None:
    """The folder's weights as converted to weight_format by an earlier load, if cached and readable."""
    path = format_cache(folder, f"model-{weight_format}.safetensors")
    if not path.is_file():
        return None
    try:
        return _load_safetensors(path)
    except CheckpointError as err:
        log.warning("%s weights cache %s is corrupt (%s); converting again", weight_format, path, err)
        return None


def save_format_cache(state: dict[str, torch.Tensor], folder: Path, weight_format: str) -> None:
    """Cache weights converted to weight_format; a failure only costs the next start a conversion."""
    try:
        _save_atomic(state, format_cache(folder, f"model-{weight_format}.safetensors"))
    except CheckpointError as err:
        log.warning("%s; the %s weights are not cached", err, weight_format)


def converted_path(pth: Path) -> Path:
    """Cache path for a .pth's conversion, keyed by the file's identity.

    In the Hub cache the real path is the content-addressed blob, so the key
    follows the downloaded commit; for a local file, path, size and mtime.
    """
    return cache_dir() / "converted" / file_key(pth) / SAFETENSORS


def file_key(path: Path) -> str:
    """A short key that changes when the file (or what its link points to) changes."""
    real = path.resolve()
    stat = real.stat()
    return hashlib.sha256(f"{real}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]


def read_consolidated(path: Path) -> dict[str, torch.Tensor]:
    """Read lingua's consolidated.pth safely: no code runs, the optimizer state stays on disk."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        # torch's message leads with advice to retry unsafely; keep only what it found.
        found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global|$)", str(err), re.M)
        raise CheckpointError(
            f"{path} was refused: it is not a plain tensor checkpoint; it holds Python objects that are never "
            f"unpickled here, since that could run code ({found[1] if found else _first_line(err)})"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is truncated or corrupt: {_first_line(err)}") from err
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a lingua state dict ({{'model': {{name: tensor}}}})")
    return state


def _first_line(err: BaseException) -> str:
    return next(iter(str(err).splitlines()), type(err).__name__)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map each tensor on its own: one that is dropped (the model fuses its weights
    into new matrices, `LoopedTransformer.fuse_weights`) then leaves memory at once,
    where with one shared mapping every page read would stay until the last tensor goes."""
    try:
        with safe_open(path, "pt") as file:
            keys = list(file.keys())
        return {key: _read_tensor(path, key) for key in keys}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def _read_tensor(path: Path, key: str) -> torch.Tensor:
    with safe_open(path, "pt") as file:
        return file.get_tensor(key)


def _save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write safetensors to a temporary file and rename it, so a crash leaves no half file.

    safetensors refuses tensors that share storage, which torch.save keeps (a tied
    head saved as output.weight is the embedding itself): those are copied.
    """
    tensors, storages = {}, set()
    for key, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.contiguous().clone() if storage in storages else tensor.contiguous()
        storages.add(storage)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:  # safetensors reports a full disk as a SafetensorError
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if _disk_full(err):
            need = sum(t.nbytes for t in tensors.values())
            raise CheckpointError(f"{_disk_full_message(need, path.parent)} to cache the converted weights") from err
        raise CheckpointError(f"cannot write the converted weights to {path}: {err}") from err


def build_model(args: ModelArgs, state: dict[str, torch.Tensor]) -> LoopedTransformer:
    """Build the model around the tensors (validated by `layout.read_layout`) without allocating a second copy."""
    with torch.device("meta"):
        model = LoopedTransformer(args)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def write_checkpoint(
    folder: str | os.PathLike,
    model: LoopedTransformer,
    params: dict[str, Any],
    *,
    optim_state: dict[str, Any] | None = None,
    safetensors: bool = True,
) -> Path:
    """Write a lingua-layout checkpoint: params.json + consolidated.pth (+ model.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    (folder / PARAMS).write_text(json.dumps(params, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    torch.save({"model": state, "optim": optim_state or {}}, folder / CONSOLIDATED)
    if safetensors:
        save_file(state, folder / SAFETENSORS)
    return folder
