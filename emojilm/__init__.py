"""Emoji-ByteLM: runnable inference, training and a demo for a byte-level looped transformer.

import emojilm
lm = emojilm.load("bundled")          # or a Hub repo id, or a local folder
lm.translate("I love pizza").text
"""

from emojilm.checkpoint import CheckpointError
from emojilm.lm import EmojiLM, load
from emojilm.request import Request

__all__ = ["CheckpointError", "EmojiLM", "Request", "load"]
