"""Prompt templates: how a text is laid out before the model writes its emoji.

Training documents are BOS + template(text) + emoji + EOS. Our own checkpoints
record their template in params.json; for the published checkpoint it is not
known, so the variant probe picks one of CANDIDATE_TEMPLATES (docs/checkpoint.md, "Guessed").
"""

from __future__ import annotations

import re
import unicodedata

TEXT_SLOT = "{text}"

CANDIDATE_TEMPLATES = {
    "newline": "{text}\n",
    "tab": "{text}\t",
    "space": "{text} ",
    "arrow": "{text} → ",
    "ascii_arrow": "{text} => ",
    "colon": "{text}: ",
    "labels": "Text: {text}\nEmoji: ",
    "none": "{text}",
}
DEFAULT_TEMPLATE = "newline"

# Pairs whose answer is not in doubt: the model card's example and a few obvious ones.
KNOWN_PAIRS = (
    ("I love pizza", "🍕❤️"),
    ("pizza", "🍕"),
    ("I love you", "❤️"),
    ("a cup of coffee", "☕"),
    ("my cat", "🐱"),
    ("happy birthday", "🎂"),
    ("it is raining", "🌧️"),
    ("let's play soccer", "⚽"),
)

_SPACES = re.compile(r"\s+")


def resolve_template(template: str) -> str:
    """A template name from CANDIDATE_TEMPLATES, or a literal template holding {text} once."""
    template = CANDIDATE_TEMPLATES.get(template, template)
    if not isinstance(template, str) or template.count(TEXT_SLOT) != 1:
        raise ValueError(
            f"prompt template {template!r} must be one of {sorted(CANDIDATE_TEMPLATES)} "
            f"or a string containing {TEXT_SLOT} exactly once"
        )
    return template


def template_name(template: str) -> str:
    """The candidate name of a literal template, or the literal itself (for display)."""
    return next((name for name, t in CANDIDATE_TEMPLATES.items() if t == template), template)


def clean_text(text: str) -> str:
    """Normalize user text the way training text looks: NFC, one line, no control characters."""
    text = unicodedata.normalize("NFC", text)
    # Drop control characters (NUL etc., but not whitespace) and keep format ones such as ZWJ, which emoji need.
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return _SPACES.sub(" ", text).strip()


def format_prompt(text: str, template: str) -> str:
    return resolve_template(template).replace(TEXT_SLOT, clean_text(text))
