"""Byte tokenizer with lingua's ids: bytes are 0-255, BOS is 256, EOS is 257.

Lone surrogates (which Python strings may hold but UTF-8 cannot encode) are
replaced by U+FFFD before encoding, so `encode` never fails on any `str`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

N_BYTES = 256
BOS_ID = 256
EOS_ID = 257
VOCAB_SIZE = 258


class ByteTokenizer:
    bos_id = BOS_ID
    eos_id = EOS_ID
    vocab_size = VOCAB_SIZE

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8", errors="replace_surrogates"))
        return [BOS_ID] * bos + ids + [EOS_ID] * eos

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes to text; special ids are dropped, invalid UTF-8 becomes U+FFFD."""
        return _byte_string(ids).decode("utf-8", errors="replace")

    def stream(self) -> StreamDecoder:
        return StreamDecoder()


def _byte_string(ids: Iterable[int]) -> bytes:
    """The byte ids as bytes; special and out-of-range ids are dropped."""
    return bytes(i for i in ids if 0 <= i < N_BYTES)


def invalid_utf8_bytes(ids: Iterable[int]) -> int:
    """How many of the byte ids (special ids dropped) form no UTF-8 character: the bytes `decode` shows as U+FFFD."""
    data, count = _byte_string(ids), 0
    while True:
        try:
            data.decode("utf-8")
            return count
        except UnicodeDecodeError as error:  # everything before error.start decoded
            count += error.end - error.start
            data = data[error.end :]


class StreamDecoder:
    """Incremental decoder: releases text only at complete UTF-8 characters.

    Feed ids one at a time; each `push` returns the text completed by that id
    (often "" in the middle of a 4-byte emoji). `flush` returns what is left,
    with an incomplete trailing sequence shown as U+FFFD.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if not 0 <= token_id < N_BYTES:
            return ""
        return self._decoder.decode(bytes([token_id]))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)

    def iter_text(self, ids: Iterable[int]) -> Iterator[str]:
        """Yield the text released by each id, skipping empty pieces, then the flush."""
        for token_id in ids:
            if piece := self.push(token_id):
                yield piece
        if tail := self.flush():
            yield tail


def _replace_surrogates(error: UnicodeError) -> tuple[str, int]:
    # One U+FFFD per surrogate. The UTF-8 encoder only takes ASCII text back from an
    # error handler, so the replacement must be given as bytes.
    if isinstance(error, UnicodeEncodeError):
        return "\ufffd".encode() * (error.end - error.start), error.end
    raise error


codecs.register_error("replace_surrogates", _replace_surrogates)


def char_spans(ids: Iterable[int]) -> list[tuple[str, int, int]]:
    """Split byte ids into characters: (text, start, end), ids[start:end] being its bytes.

    Decoding stops at the first special id. A piece the decoder releases at
    once (e.g. U+FFFD for an invalid byte, then a character) stays one span.
    """
    spans: list[tuple[str, int, int]] = []
    decoder, start, end = StreamDecoder(), 0, 0
    for token_id in ids:
        if not 0 <= token_id < N_BYTES:
            break
        end += 1
        if piece := decoder.push(token_id):
            spans.append((piece, start, end))
            start = end
    if tail := decoder.flush():
        spans.append((tail, start, end))
    return spans


def _joins_previous(ch: str) -> bool:
    """Code points that belong to the emoji before them: variation selectors, ZWJ,
    keycap, skin tones, tag characters (subdivision flags)."""
    cp = ord(ch)
    return cp in (0xFE0E, 0xFE0F, 0x200D, 0x20E3) or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F


def cluster_spans(spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Merge char_spans into what a reader sees as one emoji ("❤" + VS16, ZWJ sequences, flags)."""
    merged: list[tuple[str, int, int]] = []
    for text, start, end in spans:
        regional = 0x1F1E6 <= ord(text[0]) <= 0x1F1FF
        if merged and (
            _joins_previous(text[0])
            or merged[-1][0].endswith("\u200d")
            or (regional and len(merged[-1][0]) == 1 and 0x1F1E6 <= ord(merged[-1][0]) <= 0x1F1FF)
        ):
            text, start = merged[-1][0] + text, merged.pop()[1]
        merged.append((text, start, end))
    return merged
