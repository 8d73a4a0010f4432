"""The Space's request handling: raw widget/API values in, things to show out.

app.py only lays out the page and wires events to a SpaceBackend. Everything
here is plain Python, tested without a browser. Values arrive as a browser or
an API client sent them (None, strings, NaN...), so each is checked here and a
bad one becomes a ValueError whose message the page shows as is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd

from emojilm import views
from emojilm.engine import Engine
from emojilm.generation import Generation
from emojilm.lm import EmojiLM
from emojilm.request import (
    MAX_NEW_TOKENS,
    TEMPERATURE,
    THRESHOLD,
    TOP_P,
    Limits,
    Request,
    check_text,
    parse_integer,
    parse_number,
    parse_seed,
    short_repr,
)
from emojilm.sampling import GREEDY_BELOW
from emojilm.sources import ModelRegistry
from emojilm.speculative import default_draft_loops

# Where this machine's own servers answer; "localhost" is the address Gradio gives a server on 0.0.0.0.
LOOPBACK = ("127.0.0.1", "localhost")


def keep_loopback_off_proxies() -> None:
    """Let HTTP clients in this process (and the processes it starts) reach loopback directly.

    Gradio's launch asks its own server whether it started, through the proxy HTTP(S)_PROXY or
    ALL_PROXY names, and no proxy reaches this machine's loopback: behind one, the app would not start
    (or wait forever). NO_PROXY keeps its own entries; the Hub's downloads still take the proxy."""
    for name in ("NO_PROXY", "no_proxy"):
        listed = [host.strip() for host in os.environ.get(name, "").split(",") if host.strip()]
        os.environ[name] = ",".join(listed + [host for host in LOOPBACK if host not in listed])


EXAMPLES = [
    "I love pizza",
    "It is raining again and I am so sad",
    "Happy birthday to my dog",
    "We won the football game!",
    "what a sunny day",
    "I need coffee",
    "going for a run",
    "time for bed",
    "so much snow",
    "Ich liebe Pizza",
]


def parse_request(
    lm: EmojiLM,
    text: Any,
    temperature: Any = 0.0,
    top_p: Any = 1.0,
    loops: Any = None,
    max_new_tokens: Any = 64,
    seed: Any = None,
    adaptive: Any = False,
    threshold: Any = 0.0,
) -> Request:
    """The page's (and its API's) raw values as a Request, checked against the model's limits;
    ValueError naming the bad value. A greedy answer is drafted self-speculatively (the same
    bytes, sooner); a model with a shorter context than max_new_tokens answers with what fits."""
    check_text(text)
    limits = Limits(lm.n_loops, lm.model.args.max_seqlen)
    temperature = parse_number("temperature", temperature, *TEMPERATURE, default=0.0)
    n_loops = parse_integer("loops", loops, 1, limits.max_loops, default=lm.n_loops)
    threshold = parse_number("threshold", threshold, *THRESHOLD, default=0.0) if adaptive else 0.0
    max_new_tokens = parse_integer("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS, default=64)
    drafted = temperature < GREEDY_BELOW and threshold == 0
    return Request(
        text=text,
        temperature=temperature,
        top_p=parse_number("top_p", top_p, *TOP_P, default=1.0),
        seed=parse_seed(seed),
        n_loops=n_loops,
        max_new_tokens=min(limits.max_new_tokens, max_new_tokens),
        adaptive_threshold=threshold,
        draft_loops=default_draft_loops(n_loops) if drafted else 0,
    )


class SpaceBackend:
    """batched: answers of concurrent visitors are decoded together by one engine (emojilm.engine),
    whose thread also runs the traces, so that every visitor's torch work runs on one thread; else
    (ZeroGPU, where a GPU exists only inside a visitor's call) each call computes on its own."""

    def __init__(self, registry: ModelRegistry, batched: bool = True) -> None:
        self.registry = registry
        self.batched = batched
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def model(self, source: str, loop_mode: str | None = None, template: str | None = None) -> EmojiLM:
        return self.registry.get(source, loop_mode or None, template or None)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = Engine()
            return self._engine

    @property
    def batch(self) -> Engine | None:
        """The engine the model's work runs through, or None where each call computes on its own."""
        return self.engine if self.batched else None

    def stream(self, lm: EmojiLM, request: Request) -> Iterator[Generation]:
        return lm.stream(request, engine=self.batch)

    def trace_views(
        self, lm: EmojiLM, request: Request, answer: Generation | None = None
    ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        """Heatmap HTML, answer-per-loop table and convergence plot data for one request
        (reusing its streamed answer, when given, instead of translating again)."""
        trace = lm.trace(request, reuse=answer, engine=self.batch)
        return views.heatmap_html(trace), views.per_loop_table(trace), views.convergence_frame(trace)

    def layer_view(self, lm: EmojiLM, request: Request, answer: Generation | None = None) -> str:
        """The layer-by-layer lens of one answer, as a picture (asked for on the page)."""
        return views.layer_lens_html(lm.trace(request, reuse=answer, per_layer=True, engine=self.batch))

    # The two public API endpoints (also reachable without the UI, so they validate everything).

    def api_translate_stream(self, text, temperature=0.0, top_p=1.0, loops=None, max_new_tokens=64, seed=None):
        """/translate: the answer so far and its summary line, at every complete character. A caller who
        stops reading (cancels) leaves the engine's batch at its next step."""
        lm = self.model(self.registry.default)
        request = parse_request(lm, text, temperature, top_p, loops, max_new_tokens, seed)
        for partial in self.stream(lm, request):
            yield partial.text, views.summary_line(partial, request.seed)

    def api_translate(self, *args, **kwargs) -> tuple[str, str]:
        """/translate's last answer: (emoji, summary line)."""
        *_, last = self.api_translate_stream(*args, **kwargs)
        return last

    def api_trace(self, text, temperature=0.0, top_p=1.0, loops=None, max_new_tokens=64, seed=None, per_layer=False):
        """(output, by_loop, per_loop_outputs, summary), and by_layer when per_layer is true."""
        lm = self.model(self.registry.default)
        request = parse_request(lm, text, temperature, top_p, loops, max_new_tokens, seed)
        if not isinstance(per_layer, bool):
            raise ValueError(f"per_layer must be true or false, got {short_repr(per_layer)}")
        *_, answer = self.stream(lm, request)  # as on the page: decoded beside other visitors' answers
        trace = lm.trace(request, reuse=answer, per_layer=per_layer, engine=self.batch)
        tables = (trace.by_loop, trace.per_loop_outputs, trace.summary)
        return trace.output, *tables, *((trace.by_layer,) if per_layer else ())
