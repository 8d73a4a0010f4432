"""What one translation asks for, checked once against one set of limits.

Every way in builds a `Request`: the library (`lm.translate(text, **settings)`), the
page and its API (`parse_request`, from raw widget values), share links and the
command line. The ranges are written here and nowhere else, so a value one entry
takes every other entry takes too, and each help text quotes `RANGES`.

A request is checked in two steps, both here: its own values when it is made
(`Request(...)`), and what depends on the model (the loop cap, the context) by
`for_model`, which also fills in the trained loop count.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

from emojilm.sampling import SamplingParams

MAX_TEXT_CHARS = 20_000  # the page, its API and links refuse longer input; the library cuts any text to the context
MAX_NEW_TOKENS = 256  # bytes per answer: with the loop cap, this bounds one request's compute
MIN_PROMPT = 16  # context bytes always left for the prompt, whatever max_new_tokens asks
LOOPS_FACTOR = 2  # loop counts go up to twice the trained count (a looped model may extrapolate)
TEMPERATURE = (0.0, 2.0)
TOP_P = (0.0, 1.0)  # open at 0: some mass must stay
TOP_K = (0, 258)  # 0: no top-k cut; 258: the byte vocabulary
THRESHOLD = (0.0, 1.0)  # adaptive loops' KL threshold in nats; 0: every loop runs
SEED = (-(2**63), 2**64 - 1)  # what torch.Generator takes
# Seeds the page shows, draws and takes from links start at 0: a browser's number box keeps these exact.
MAX_PAGE_SEED = 2**31 - 1
DRAW_SEED = -1  # what the page (or a link, or the command line) sends for "draw one"

# One line per setting, for help texts (the page's, the API's and the command line's).
RANGES = {
    "temperature": f"{TEMPERATURE[0]:g} (greedy) to {TEMPERATURE[1]:g}",
    "top_p": f"above {TOP_P[0]:g}, up to {TOP_P[1]:g} (1: no cut)",
    "top_k": f"{TOP_K[0]} (no cut) to {TOP_K[1]}",
    "loops": f"1 to {LOOPS_FACTOR}× the trained count",
    "max_new_tokens": f"1 to {MAX_NEW_TOKENS} bytes (fewer where the context is shorter)",
    "seed": f"0 to {MAX_PAGE_SEED}; {DRAW_SEED} draws one",
    "threshold": f"{THRESHOLD[0]:g} to {THRESHOLD[1]:g} nats",
    "draft_loops": "0 (off) to the loop count - 1",
    "text": f"up to {MAX_TEXT_CHARS:,} characters",
}


@dataclass(frozen=True)
class Limits:
    """The ranges that depend on the model: its trained loop count and its context length."""

    trained_loops: int
    context: int

    @property
    def max_loops(self) -> int:
        return LOOPS_FACTOR * max(1, self.trained_loops)

    @property
    def max_new_tokens(self) -> int:
        return max(1, min(MAX_NEW_TOKENS, self.context - MIN_PROMPT))


@dataclass(frozen=True)
class Request:
    """One translation: the text, how to sample, how many loops, how long, and how to decode."""

    text: str
    temperature: float = 0.0  # below sampling.GREEDY_BELOW: greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None  # None: a fresh one (lm.stream draws it, so that a trace can replay the answer)
    n_loops: int | None = None  # None: the trained count (for_model fills it in)
    max_new_tokens: int = 64
    adaptive_threshold: float = 0.0  # > 0: each byte stops looping once two read-outs agree this well
    draft_loops: int = 0  # > 0: decode self-speculatively, drafting with this many loops

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"text must be a string, got {type(self.text).__name__}")
        check_number("temperature", self.temperature, *TEMPERATURE)
        check_number("top_p", self.top_p, *TOP_P, low_open=True)
        check_integer("top_k", self.top_k, *TOP_K)
        if self.seed is not None:
            check_integer("seed", self.seed, *SEED)
        if self.n_loops is not None:
            check_integer("n_loops", self.n_loops, 1, math.inf)
        check_integer("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS)
        check_number("adaptive_threshold", self.adaptive_threshold, *THRESHOLD)
        check_integer("draft_loops", self.draft_loops, 0, math.inf)
        if self.draft_loops and self.adaptive_threshold > 0:
            raise ValueError("adaptive loops and speculative drafting cannot be combined; choose one")

    def for_model(self, limits: Limits) -> Request:
        """This request with its loop count filled in, checked against a model's limits."""
        n_loops = limits.trained_loops if self.n_loops is None else self.n_loops
        check_integer("n_loops", n_loops, 1, limits.max_loops)
        check_integer("max_new_tokens", self.max_new_tokens, 1, limits.max_new_tokens)
        check_integer("draft_loops", self.draft_loops, 0, n_loops - 1)
        return self if n_loops == self.n_loops else replace(self, n_loops=n_loops)

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.top_k, self.seed)


def check_number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """value itself, if it is a real number (not a bool) in [low, high] (or (low, high]); else ValueError."""
    # Not math.isfinite: it raises OverflowError on an int too large for a float (then refused by range).
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < math.inf
    if not ok or value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bound}{low}, {high}], got {short_repr(value)}")
    return value


def check_integer(name: str, value: Any, low: float, high: float) -> int:
    """value itself, if it is an int (not a bool) from low to high; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        upper = "" if high == math.inf else f" to {high}"
        raise ValueError(f"{name} must be an integer from {low}{upper}, got {short_repr(value)}")
    return value


# --- raw values: a widget's, an API client's, a link's or a command line's ---------------------------


def check_text(text: Any) -> str:
    """A text the page, its API and links take: a string of MAX_TEXT_CHARS at most, not blank."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}")
    if not text.strip():
        raise ValueError("Type some text to translate into emoji.")
    return text


def parse_number(name: str, value: Any, low: float, high: float, default: float | None = None) -> float:
    """A raw value as a number in [low, high] ("0.5", 0.5 and 1 alike); None or "" give the default."""
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


def parse_seed(value: Any) -> int:
    """A raw seed: 0 to MAX_PAGE_SEED, or DRAW_SEED (or nothing) for a freshly drawn one."""
    seed = parse_integer("seed", value, DRAW_SEED, MAX_PAGE_SEED, default=DRAW_SEED)
    return seed if seed != DRAW_SEED else random.randrange(MAX_PAGE_SEED + 1)


def short_repr(value: Any) -> str:
    """repr for a message, cut so that a huge value (from a request, a link, a checkpoint) cannot flood the page."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
