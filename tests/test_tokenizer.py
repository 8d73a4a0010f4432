"""The byte tokenizer: lingua's ids, total encoding, and streaming at character boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emojilm.tokenizer import BOS_ID, EOS_ID, VOCAB_SIZE, ByteTokenizer, invalid_utf8_bytes

tok = ByteTokenizer()

# Any Python string, lone surrogates included (no category is excluded).
any_text = st.text(alphabet=st.characters(blacklist_categories=()))
# Strings that UTF-8 can encode as they are.
valid_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
EMOJI = ["🍕❤️", "👩‍👩‍👧", "❤️", "🏳️‍🌈", "👍🏽", "🇫🇷", "é", "日本語", "a☕b"]


def without_surrogates(text: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def stream_pieces(ids: list[int]) -> list[str]:
    """What a StreamDecoder returns for each pushed id, then the flush."""
    decoder = tok.stream()
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_ids_match_lingua():
    assert (BOS_ID, EOS_ID, VOCAB_SIZE) == (256, 257, 258)
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (256, 257, 258)
    assert tok.encode("Hi", bos=True, eos=True) == [256, 72, 105, 257]
    assert tok.encode("🍕") == [0xF0, 0x9F, 0x8D, 0x95]


@pytest.mark.parametrize("text", ["", "I love pizza", *EMOJI])
def test_round_trip_examples(text):
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text


@given(valid_text)
def test_round_trip(text):
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


@given(any_text)
def test_encode_never_raises_and_replaces_each_lone_surrogate(text):
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[1:-1] == list(without_surrogates(text).encode("utf-8"))
    assert all(0 <= i < 256 for i in ids[1:-1])


def test_lone_surrogates():
    assert tok.encode("a\ud800b") == list("a\ufffdb".encode())
    assert tok.decode(tok.encode("\udc00\ud800")) == "\ufffd\ufffd"


@given(st.lists(st.integers(0, VOCAB_SIZE - 1)))
def test_decode_drops_special_ids(ids):
    assert tok.decode(ids) == bytes(i for i in ids if i < 256).decode("utf-8", "replace")


@given(st.binary())
def test_invalid_utf8_bytes_counts_the_bytes_no_character_takes(data):
    # Independently: surrogateescape turns each such byte into one lone surrogate U+DC80-U+DCFF.
    escaped = data.decode("utf-8", "surrogateescape")
    assert invalid_utf8_bytes(list(data)) == sum(0xDC80 <= ord(c) <= 0xDCFF for c in escaped)


@pytest.mark.parametrize(
    ("data", "invalid"),
    [
        ("🍕❤️".encode(), 0),
        ("\ufffd".encode(), 0),  # the replacement character itself is valid text
        ("🍕".encode() + b"\xff\xfe" + "❤️".encode(), 2),
        (b"ab" + "🍕".encode()[:3], 3),  # a 4-byte emoji cut short at the end
    ],
)
def test_invalid_utf8_bytes_examples(data, invalid):
    assert invalid_utf8_bytes([BOS_ID, *data, EOS_ID]) == invalid


def test_decode_drops_bos_eos_and_out_of_range():
    assert tok.decode([BOS_ID, 104, 105, EOS_ID, 300, -1]) == "hi"


@given(st.binary())
def test_stream_of_any_bytes_equals_one_shot_decode(data):
    assert "".join(stream_pieces(list(data))) == data.decode("utf-8", "replace")


@given(st.one_of(valid_text, st.sampled_from(EMOJI)))
def test_stream_releases_only_complete_characters(text):
    data = text.encode("utf-8")
    released = ""
    for n, piece in enumerate(stream_pieces(list(data))[:-1], start=1):
        released += piece
        # Exactly the characters whose bytes have all arrived: no more, no less.
        assert released == data[:n].decode("utf-8", "ignore")
    assert released == text


def test_stream_holds_back_a_four_byte_emoji_until_complete():
    assert stream_pieces(list("🍕".encode())) == ["", "", "", "🍕", ""]


def test_stream_ignores_special_ids_and_flushes_incomplete_tail():
    ids = [BOS_ID, *"é".encode(), EOS_ID, 0xF0, 0x9F]
    assert "".join(stream_pieces(ids)) == "é\ufffd"


def test_iter_text_skips_empty_pieces():
    ids = tok.encode("👩‍👩‍👧!", bos=True, eos=True)
    pieces = list(tok.stream().iter_text(ids))
    assert "".join(pieces) == "👩‍👩‍👧!"
    assert pieces == ["👩", "\u200d", "👩", "\u200d", "👧", "!"]
