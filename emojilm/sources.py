"""Which models the Space may serve, and loading them without ever blocking start-up.

The operator decides the sources (environment variables or CLI flags); a page
visitor only picks among them, so a request can never make the server read an
arbitrary path or repo. The Hub model loads in a background thread: if it is
not ready within `hub_wait_s`, the app starts on the bundled model and says so,
shows the download's progress, and moves to the Hub model once it is ready.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import emojilm
from emojilm.checkpoint import CheckpointError
from emojilm.config import LOOP_MODES
from emojilm.lm import DTYPES, EmojiLM
from emojilm.prompt import resolve_template

log = logging.getLogger(__name__)

BUNDLED = "bundled"
DEFAULT_REPO = "chili-lab/Emoji-ByteLM"
MAX_REASON = 600  # characters of a load failure shown on the status line (room for the keys it names)


@dataclass(frozen=True)
class SourceConfig:
    hub_repo: str = DEFAULT_REPO
    hub_revision: str | None = None
    extra_sources: tuple[str, ...] = ()  # more allowed sources (Hub ids or server folders)
    hub_wait_s: float = 5.0
    device: str | None = None
    dtype: str = "auto"  # a weight format, or the fastest one that agrees with float32 (emojilm.formats)
    check_texts: tuple[str, ...] = ()  # what that agreement is also checked on (the page's examples)
    # Pins for the Hub model's variant (the bundled model records its own): skip the probe.
    loop_mode: str | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"weight format {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.loop_mode is not None and self.loop_mode not in LOOP_MODES:
            raise ValueError(f"loop mode pin {self.loop_mode!r} is not one of {', '.join(LOOP_MODES)}")
        if self.template is not None:
            try:
                resolve_template(self.template)
            except ValueError as problem:
                raise ValueError(f"template pin: {problem}") from None

    @classmethod
    def from_env(cls, **overrides) -> SourceConfig:
        env = os.environ
        extra = tuple(s.strip() for s in env.get("EMOJILM_EXTRA_SOURCES", "").split(",") if s.strip())
        values = {
            "hub_repo": env.get("EMOJILM_REPO", DEFAULT_REPO),
            "hub_revision": env.get("EMOJILM_REVISION") or None,
            "extra_sources": extra,
            "hub_wait_s": float(env.get("EMOJILM_HUB_WAIT", 5.0)),
            "device": env.get("EMOJILM_DEVICE") or None,
            "dtype": env.get("EMOJILM_DTYPE") or "auto",
            "loop_mode": env.get("EMOJILM_LOOP_MODE") or None,
            "template": env.get("EMOJILM_TEMPLATE") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def allowed(self) -> tuple[str, ...]:
        """Every source a request may name, the Hub model first; "" disables the Hub."""
        hub = (self.hub_repo,) if self.hub_repo else ()
        return tuple(dict.fromkeys((*hub, BUNDLED, *self.extra_sources)))


@dataclass
class _Slot:
    state: str = "idle"  # idle, loading, ready, failed
    lm: EmojiLM | None = None
    error: str = ""
    started: float = 0.0
    variants: dict = field(default_factory=dict)
    download: tuple[str, int, int | None] | None = None  # file, bytes written, size: the latest Hub file
    probing: tuple[int, int] | None = None  # probe forwards run, the most it may run


@dataclass(frozen=True)
class PageState:
    """What the page's model line says, and which model the page should show."""

    source: str
    note: str
    polling: bool  # something is still loading: look again soon
    redescribe: bool = False  # the loop slider and model info describe another model than `source`, now ready


class ModelRegistry:
    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self._slots = {source: _Slot() for source in config.allowed}
        self._lock = threading.Lock()

    def start(self) -> str:
        """Begin loading every source; wait up to hub_wait_s for the Hub model.

        Returns the source to show first: the Hub model if it is ready, else the bundled one.
        """
        for source in self._slots:
            self._load_in_background(source)
        hub = self.config.hub_repo
        if hub and hub in self._slots:
            self._wait(hub, self.config.hub_wait_s)
            if self._slots[hub].state == "ready":
                return hub
        self._wait(BUNDLED, timeout=None)
        return BUNDLED

    def _load_in_background(self, source: str) -> None:
        slot = self._slots[source]
        with self._lock:
            if slot.state in ("loading", "ready"):
                return
            slot.state, slot.started, slot.error, slot.download, slot.probing = "loading", time.time(), "", None, None
        hub = source == self.config.hub_repo
        revision = self.config.hub_revision if hub else None
        pins = {"loop_mode": self.config.loop_mode, "template": self.config.template} if hub else {}

        def progress(filename: str, done: int, total: int | None) -> None:
            slot.download = (filename, done, total)

        def probing(done: int, total: int) -> None:
            slot.probing = (done, total)

        def work() -> None:
            try:
                lm = emojilm.load(
                    source,
                    revision=revision,
                    device=self.config.device,
                    dtype=self.config.dtype,
                    check_texts=self.config.check_texts,
                    progress=progress,
                    probing=probing,
                    **pins,
                )
            except Exception as err:  # any failure is reported on the page, never raised into the UI
                log.warning("loading %s failed: %s", source, err)
                slot.state, slot.error = "failed", failure_reason(err)
            else:
                slot.lm, slot.state = lm, "ready"

        threading.Thread(target=work, name=f"load {source}", daemon=True).start()

    def _wait(self, source: str, timeout: float | None) -> None:
        deadline = None if timeout is None else time.time() + timeout
        while self._slots[source].state == "loading" and (deadline is None or time.time() < deadline):
            time.sleep(0.05)

    def status(self, source: str) -> str:
        """A sentence for the page about one source."""
        slot = self._slots.get(source)
        if slot is None:
            return f"{source!r} is not one of this Space's models."
        if slot.state == "loading":
            seconds = f"{time.time() - slot.started:.0f} s so far"
            if slot.probing:
                done, total = slot.probing
                return f"{source} is still loading: probing variants: pass {done} of at most {total} ({seconds})…"
            if slot.download and slot.download[1] != slot.download[2]:
                filename, done, total = slot.download
                share = f" of {_size(total)} ({100 * done / total:.0f} %)" if total else ""
                return f"{source} is still loading: downloading {filename}, {_size(done)}{share}…"
            return f"{source} is still loading: reading and converting the weights ({seconds})…"
        if slot.state == "failed":
            return f"{source} could not be loaded: {slot.error}"
        note = slot.lm.info.note  # a cached copy used while the Hub is offline
        return f"{source} is ready: {note}." if note else f"{source} is ready."

    def get(self, source: str, loop_mode: str | None = None, template: str | None = None) -> EmojiLM:
        """The loaded model for an allowed source (optionally an override variant of it)."""
        if source not in self._slots:
            raise ValueError(f"model must be one of {list(self._slots)}, got {source!r}")
        slot = self._slots[source]
        if slot.state == "failed":  # tell the user why now, and try again for next time
            reason = self.status(source)
            self._load_in_background(source)
            raise ValueError(f"{reason.rstrip('.')}. Trying again in the background.")
        if slot.state != "ready":
            raise ValueError(self.status(source))
        if not loop_mode and not template:
            return slot.lm
        key = (loop_mode or None, template or None)
        with self._lock:
            if key not in slot.variants:
                slot.variants[key] = slot.lm.with_variant(*key)
            return slot.variants[key]

    def page_state(self, shown: str, chosen: bool, described: str | None = None) -> PageState:
        """The page's model line, polled while anything loads.

        The page starts on the bundled model while the Hub model loads and moves to
        it once it is ready, unless the visitor picked a model themself (`chosen`).
        `described` is the model the page's loop slider and model info were set for
        (by default the one shown); a model picked while it was still loading is
        described once it is ready.
        """
        source = shown if chosen and shown in self._slots else self.default
        hub = self.config.hub_repo
        if source != shown:
            note = f"{source} is ready: now using it."
        elif source == BUNDLED and hub in self._slots and self._slots[hub].state != "ready":
            note = f"Using the bundled demo model: {self.status(hub)}"
        else:
            note = self.status(source)
        polling = any(slot.state == "loading" for slot in self._slots.values())
        ready = self._slots[source].state == "ready"
        return PageState(source, note, polling, redescribe=ready and source != (described or shown))

    @property
    def sources(self) -> list[str]:
        return list(self._slots)

    @property
    def default(self) -> str:
        """The Hub model once it is ready, the bundled one until then."""
        hub = self.config.hub_repo
        return hub if hub in self._slots and self._slots[hub].state == "ready" else BUNDLED


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def failure_reason(err: Exception) -> str:
    """Why a model could not load, in one line for the page or a terminal: no stack trace, no internal
    class names; a checkpoint's list of problems (keys, fields) is joined onto the line, cut at MAX_REASON."""
    name = type(err).__name__
    first = str(err).strip().splitlines()[0] if str(err).strip() else name
    if isinstance(err, CheckpointError):  # written for people already (and may name a revision to keep)
        line = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
        return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"
    if "offline" in first.lower() or "connect" in first.lower() or name.endswith(("ConnectError", "Timeout")):
        return "the Hugging Face Hub cannot be reached from this machine"
    return first[:MAX_REASON]  # other errors' later lines are tracebacks and advice
