"""The Space's request handling: raw widget/API values in, things to show out.

app.py only lays out the page and wires events to a SpaceBackend. Everything
here is plain Python, tested without a browser. Values arrive as a browser or
an API client sent them (None, strings, NaN...), so each is checked here and a
bad one becomes a ValueError whose message the page shows as is.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from emojilm import views
from emojilm.generation import MIN_PROMPT, Generation
from emojilm.lm import EmojiLM
from emojilm.sampling import GREEDY_BELOW
from emojilm.sources import ModelRegistry
from emojilm.speculative import default_draft_loops
from emojilm.views import short_repr

MAX_TEXT_CHARS = 20_000  # longer input is refused outright; shorter input is cut to the context
MAX_NEW_TOKENS = 256  # bytes per answer: with the loop cap, this bounds one request's compute
LOOPS_FACTOR = 2  # the loop slider goes up to twice the trained count
# What a request may ask for: parse_request checks these, and the page's controls span the same ranges
# (so a value that the API takes, in a link too, is one the page can show).
TEMPERATURE_RANGE = (0.0, 2.0)
TOP_P_RANGE = (0.01, 1.0)
THRESHOLD_RANGE = (0.0, 1.0)  # adaptive loops' KL threshold, nats (the page's option; the API has none)
EXAMPLES = [
    "I love pizza",
    "It is raining again and I am so sad",
    "Happy birthday to my dog",
    "We won the football game!",
    "what a sunny day",
    "I need coffee",
    "let's play guitar",
    "we are going to the mountains",
    "so much snow",
    "Ich liebe Pizza",
]


@dataclass(frozen=True)
class Request:
    text: str
    temperature: float
    top_p: float
    n_loops: int
    max_new_tokens: int
    seed: int
    adaptive_threshold: float

    def decoding(self) -> dict[str, Any]:
        """How the answer is decoded: a greedy one is drafted self-speculatively (the same bytes, sooner)."""
        drafted = self.temperature < GREEDY_BELOW and self.adaptive_threshold == 0
        draft_loops = default_draft_loops(self.n_loops) if drafted else 0
        return {"adaptive_threshold": self.adaptive_threshold, "draft_loops": draft_loops}

    def sampling(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "n_loops": self.n_loops,
            "max_new_tokens": self.max_new_tokens,
        }


def parse_number(name: str, value: Any, low: float, high: float, default: float | None = None) -> float:
    """A raw value (a widget's, an API client's, a link's or a command line's) as a number in [low, high]."""
    if value is None or value == "":
        if default is None:
            raise ValueError(f"{name} is required")
        return default
    message = f"{name} must be a number from {low} to {high}, got {short_repr(value)}"
    if isinstance(value, bool):  # a JSON true/false, which float() would take as 1/0
        raise ValueError(message)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int too large for a float
        raise ValueError(message) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(message)
    return number


def parse_integer(name: str, value: Any, low: int, high: int, default: int | None = None) -> int:
    """A raw value as a whole number in [low, high] ("3", 3.0 and 3 alike)."""
    number = parse_number(name, value, low, high, default)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {short_repr(value)}")
    return int(number)


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
    """Check every raw value against the model's limits; raise ValueError naming the bad one."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}")
    if not text.strip():
        raise ValueError("Type some text to translate into emoji.")
    max_loops = LOOPS_FACTOR * lm.n_loops
    # The page offers up to MAX_NEW_TOKENS; a model with a shorter context answers with what fits.
    fits = max(1, lm.model.args.max_seqlen - MIN_PROMPT)
    seed_value = parse_integer("seed", seed, -1, 2**31 - 1, default=-1)  # -1 (or none): draw one
    return Request(
        text=text,
        temperature=parse_number("temperature", temperature, *TEMPERATURE_RANGE, default=0.0),
        top_p=parse_number("top_p", top_p, *TOP_P_RANGE, default=1.0),
        n_loops=parse_integer("loops", loops, 1, max_loops, default=lm.n_loops),
        max_new_tokens=min(fits, parse_integer("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS, default=64)),
        seed=seed_value if seed_value >= 0 else random.randrange(2**31),
        adaptive_threshold=parse_number("threshold", threshold, *THRESHOLD_RANGE, default=0.0) if adaptive else 0.0,
    )


class SpaceBackend:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def model(self, source: str, loop_mode: str | None = None, template: str | None = None) -> EmojiLM:
        return self.registry.get(source, loop_mode or None, template or None)

    def stream(self, lm: EmojiLM, request: Request) -> Iterator[Generation]:
        return lm.stream(request.text, **request.decoding(), **request.sampling())

    def trace_views(
        self, lm: EmojiLM, request: Request, answer: Generation | None = None
    ) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        """Heatmap HTML, answer-per-loop table and convergence plot data for one request
        (reusing its streamed answer, when given, instead of translating again)."""
        trace = lm.trace(
            request.text, adaptive_threshold=request.adaptive_threshold, reuse=answer, **request.sampling()
        )
        return views.heatmap_html(trace), views.per_loop_table(trace), views.convergence_frame(trace)

    # The two public API endpoints (also reachable without the UI, so they validate everything).

    def api_translate(self, text, temperature=0.0, top_p=1.0, loops=None, max_new_tokens=64, seed=None):
        lm = self.model(self.registry.default)
        request = parse_request(lm, text, temperature, top_p, loops, max_new_tokens, seed)
        result = lm.translate(request.text, **request.decoding(), **request.sampling())
        return result.text, views.summary_line(result, request.seed)

    def api_trace(self, text, temperature=0.0, top_p=1.0, loops=None, max_new_tokens=64, seed=None):
        lm = self.model(self.registry.default)
        request = parse_request(lm, text, temperature, top_p, loops, max_new_tokens, seed)
        trace = lm.trace(request.text, **request.sampling())
        return trace.output, trace.by_loop, trace.per_loop_outputs, trace.summary
