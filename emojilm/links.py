"""Links to an answer: a request written into the page's query string, and read back from one.

    /?text=a+cup+of+coffee&temperature=0.8&top_p=0.9&loops=3&max_new=64&seed=7&model=bundled

build_link writes the request that parse_request made, with the seed it drew, and the
model (and any Advanced override) it ran on: opening the link gives the same answer.
read_link reads a link, which is data from a stranger: every value is checked by the
API's own rules (parse_request) and the model against the operator's sources; a good
value is applied, a bad one is left out (its control keeps its default) with the reason,
and a text over the limit is cut to it. It never raises for what a link says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from emojilm.config import LOOP_MODES
from emojilm.lm import EmojiLM
from emojilm.prompt import CANDIDATE_TEMPLATES
from emojilm.request import MAX_TEXT_CHARS, Request, short_repr
from emojilm.space import parse_request

# A longer link is not made: proxies commonly refuse request lines past 8 KiB (the app's own server takes more).
MAX_LINK_CHARS = 8_000
TOO_LONG = "No link for this answer: its text is too long to fit in one."

# The values a link may carry (other keys, such as Gradio's own ?__theme=dark, are left alone).
KEYS = ("text", "temperature", "top_p", "loops", "max_new", "seed", "adaptive", "threshold")
KEYS += ("model", "loop_mode", "template")
# Link key -> (parse_request's argument, the Request field it becomes).
_CHECKED = {
    "temperature": ("temperature", "temperature"),
    "top_p": ("top_p", "top_p"),
    "loops": ("loops", "n_loops"),
    "max_new": ("max_new_tokens", "max_new_tokens"),
    "seed": ("seed", "seed"),
    "threshold": ("threshold", "adaptive_threshold"),
}
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# model(source, loop_mode, template) -> the loaded model; raises ValueError if it is not allowed or not ready.
ModelGetter = Callable[[str, str | None, str | None], EmojiLM]


@dataclass(frozen=True)
class LinkedPage:
    """What a link sets on the page. None: not in the link, or not usable: the control keeps its default."""

    source: str  # the model to answer with: the link's, or the page's own
    model_from_link: bool = False
    loop_mode: str | None = None  # None: auto
    template: str | None = None
    text: str | None = None  # None: nothing to answer
    temperature: float | None = None
    top_p: float | None = None
    loops: int | None = None
    max_new: int | None = None
    seed: int | None = None  # -1: draw one
    adaptive: bool | None = None
    threshold: float | None = None
    ignored: tuple[str, ...] = ()  # why each left-out value was left out

    @property
    def note(self) -> str:
        """One line for the page: what of the link was not used ("" when all of it was)."""
        if not self.ignored:
            return ""
        return f"⚠️ Not taken from the link, the defaults stand instead: {'; '.join(self.ignored)}."


def build_link(request: Request, source: str, loop_mode: str | None = None, template: str | None = None) -> str | None:
    """The query string ("?text=...") that makes the page answer this request again; None if too long."""
    params: dict[str, str | int] = {
        "text": request.text,
        "temperature": _number(request.temperature),
        "top_p": _number(request.top_p),
        "loops": request.n_loops,
        "max_new": request.max_new_tokens,
        "seed": request.seed,
    }
    if request.adaptive_threshold > 0:  # a threshold of 0 decodes as without adaptive loops
        params |= {"adaptive": "true", "threshold": _number(request.adaptive_threshold)}
    params["model"] = source
    params |= {key: value for key, value in (("loop_mode", loop_mode), ("template", template)) if value}
    query = "?" + urlencode(params)
    return query if len(query) <= MAX_LINK_CHARS else None


def _number(value: float) -> str:
    """The shortest text that reads back as exactly this float (0.8, not 0.80000000000000004; 1, not 1.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def read_link(query: Mapping[str, str], sources: Sequence[str], model: ModelGetter, shown: str) -> LinkedPage | None:
    """The page's settings from its query string; None if it carries none of them.

    sources: the models the page may use; shown: the one it shows now (used unless the
    link names another that is ready). model() may still raise ValueError for `shown`.
    """
    values = {key: str(query[key]) for key in KEYS if query.get(key) not in (None, "")}
    if not values:
        return None
    ignored: list[str] = []

    source = shown
    if "model" in values:
        if values["model"] not in sources:
            ignored.append(f"model must be one of {list(sources)}, got {short_repr(values['model'])}")
        else:
            try:
                model(values["model"], None, None)
            except ValueError as err:  # still loading, or failed: say so, answer with the page's model
                ignored.append(str(err).rstrip("."))
            else:
                source = values["model"]

    overrides = {}
    for key, choices in (("loop_mode", LOOP_MODES), ("template", list(CANDIDATE_TEMPLATES))):
        if key in values:
            if values[key] in choices:
                overrides[key] = values[key]
            else:
                ignored.append(f"{key} must be one of {list(choices)}, got {short_repr(values[key])}")
    try:
        lm = model(source, overrides.get("loop_mode"), overrides.get("template"))
    except ValueError as err:
        if not overrides:
            raise
        ignored.append(f"{' and '.join(overrides)}: {str(err).rstrip('.')}")
        overrides = {}
        lm = model(source, None, None)

    text = values.get("text")
    if text is not None and len(text) > MAX_TEXT_CHARS:
        ignored.append(f"text past its first {MAX_TEXT_CHARS:,} characters (the limit)")
        text = text[:MAX_TEXT_CHARS]
    if text is not None and not text.strip():
        text = None

    checked = {}
    for key, (argument, field) in _CHECKED.items():
        if key in values:
            try:  # the API's rules for this one value (adaptive on, so that the threshold is checked too)
                request = parse_request(lm, "x", **{argument: values[key]}, adaptive=True)
            except ValueError as err:
                ignored.append(str(err))
            else:
                checked[key] = -1 if key == "seed" and float(values[key]) == -1 else getattr(request, field)

    adaptive = None
    if "adaptive" in values:
        flag = values["adaptive"].strip().lower()
        if flag in _YES or flag in _NO:
            adaptive = flag in _YES
        else:
            ignored.append(f"adaptive must be true or false, got {short_repr(values['adaptive'])}")

    return LinkedPage(
        source=source,
        model_from_link=source == values.get("model"),
        loop_mode=overrides.get("loop_mode"),
        template=overrides.get("template"),
        text=text,
        adaptive=adaptive,
        ignored=tuple(ignored),
        **checked,
    )
