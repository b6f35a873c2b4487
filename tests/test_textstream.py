from __future__ import annotations

from autoqwen.local_llm.textstream import TextStream


def chars(ids: list[int]) -> str:
    """A toy tokenizer: token id = one character code; 0 marks half of a multi-byte character."""
    out = "".join(chr(i) if i else "\ufffd" for i in ids)
    return out.replace("\ufffd\ufffd", "é")


def feed(stream: TextStream, text: str) -> tuple[list[str], bool]:
    pieces, stopped = [], False
    for ch in text:
        piece, stopped = stream.push(ord(ch))
        if piece:
            pieces.append(piece)
        if stopped:
            break
    return pieces, stopped


def test_without_stop_every_character_is_sent_at_once() -> None:
    stream = TextStream(chars)
    pieces, stopped = feed(stream, "hello")
    assert pieces == list("hello") and not stopped and stream.flush() == ""


def test_stop_string_ends_the_text_and_is_never_sent() -> None:
    stream = TextStream(chars, stop=["END"])
    pieces, stopped = feed(stream, "abcENDxyz")
    assert stopped
    assert "".join(pieces) == "abc"
    assert stream.text == "abc"
    assert stream.flush() == ""


def test_possible_stop_prefix_is_held_back_then_released() -> None:
    stream = TextStream(chars, stop=["END"])
    pieces, stopped = feed(stream, "aEN")
    assert pieces == ["a"] and not stopped
    piece, stopped = stream.push(ord("x"))
    assert piece == "ENx" and not stopped


def test_held_back_prefix_is_flushed_at_the_end() -> None:
    stream = TextStream(chars, stop=["END"])
    pieces, _ = feed(stream, "abEN")
    assert "".join(pieces) + stream.flush() == "abEN"


def test_earliest_of_several_stop_strings_wins() -> None:
    stream = TextStream(chars, stop=["zz", "b"])
    pieces, stopped = feed(stream, "abzz")
    assert stopped and "".join(pieces) == "a"


def test_unfinished_character_waits_for_its_last_byte() -> None:
    stream = TextStream(chars)
    assert stream.push(ord("a")) == ("a", False)
    assert stream.push(0) == ("", False)
    assert stream.push(0) == ("é", False)
