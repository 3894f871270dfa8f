"""The text a session takes from a user (a question, instructions): checked on the caller's thread,
so what the tokenizer cannot take, or too much of it, is refused there and the session goes on.
Torch-free: a front end checks before it sends."""

from __future__ import annotations

from engine.defaults import MAX_TEXT_CHARS
from engine.errors import LiveCCError


NOT_ANSWERED = "not answered: "  # the start of the note on a question that cannot fit the KV budget


class TextError(LiveCCError):
    """A question or instructions the session refuses (too long, not text); the session goes on."""

    code = "bad_text"


def checked_text(text: object, what: str) -> str:
    """`text` if a session can take it as a question or instructions; TextError says why not."""
    if not isinstance(text, str):
        raise TextError(f"{what} must be text")
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"{what} has {len(text)} characters, over {MAX_TEXT_CHARS}", "shorten it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the tokenizer would fail on the engine thread
        raise TextError(f"{what} is not valid Unicode text", "send it as UTF-8") from None
    return text
