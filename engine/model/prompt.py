"""LiveCC's streaming prompt format, built at the token level from the tokenizer's chat template.

Each 1-second chunk is a user turn: `Time={start:.1f}-{stop:.1f}s`, the video, then the query
only when it is new. The first chunk carries the system prompt. Later turns continue the same
conversation: the previous assistant turn is closed with `<|im_end|>\\n` and the system prompt is
not repeated. A typed question is a text-only user turn in the same conversation.

Turns are rendered with the chat template itself; the part of a rendering that belongs to the
new turn is found by rendering the conversation prefix and checking it is a true prefix, never by
slicing at fixed offsets.

Text (the query, a question, the system prompt, remembered comments) is always text: the template
is rendered around slots, so only the template's own special tokens become control tokens and a
typed `<|im_end|>` or `<|video_pad|>` stays the characters it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STREAM_CONTINUES = " ..."  # LiveCC's end-of-reply marker: "the stream goes on"


@dataclass(frozen=True)
class TokenIds:
    im_start: int
    im_end: int
    video_pad: int
    vision_start: int
    vision_end: int
    newline: list[int]
    stream_continues: int
    stops: frozenset[int]  # tokens that end a reply


def time_text(start: float, stop: float) -> str:
    return f"Time={start:.1f}-{stop:.1f}s"


_SLOT = "\x00livecc-text-{}\x00"  # stands in for a text while the template renders; no template writes NUL
_SLOTS = re.compile("\x00livecc-text-(\\d+)\x00")


class PromptBuilder:
    """Token ids for chunk turns and question turns of one streaming conversation."""

    def __init__(self, tokenizer, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self._layouts: dict[tuple, list] = {}  # a turn's shape -> its template's ids and its text slots
        tid = tokenizer.convert_tokens_to_ids
        cont = self.encode(STREAM_CONTINUES)
        if len(cont) != 1:
            raise ValueError(f"tokenizer splits '{STREAM_CONTINUES}' into {len(cont)} tokens; LiveCC needs one")
        eos = {tid("<|im_end|>")}
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        endoftext = tid("<|endoftext|>")
        if isinstance(endoftext, int) and endoftext != tokenizer.unk_token_id:
            eos.add(endoftext)
        self.ids = TokenIds(
            im_start=tid("<|im_start|>"), im_end=tid("<|im_end|>"), video_pad=tid("<|video_pad|>"),
            vision_start=tid("<|vision_start|>"), vision_end=tid("<|vision_end|>"),
            newline=self.encode("\n"), stream_continues=cont[0], stops=frozenset(eos | {cont[0]}),
        )

    def encode(self, text: str) -> list[int]:
        """Ids of `text` as plain text: a special-token string in it becomes ordinary tokens."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids

    def _encode_template(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    # -- rendering -----------------------------------------------------------------------
    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def _system(self, system_prompt: str | None) -> list[dict]:
        return [{"role": "system", "content": system_prompt}] if system_prompt else []

    def render_turn(self, content: list[dict], first: bool, system_prompt: str | None = None) -> str:
        """The text of one user turn plus the assistant prompt; with the system prompt if first."""
        user = {"role": "user", "content": content}
        if first:
            return self._render(self._system(system_prompt) + [user], True)
        # Render behind a placeholder system turn and keep what the new turn added.
        prefix_msgs = self._system(system_prompt) or [{"role": "system", "content": "livecc"}]
        prefix = self._render(prefix_msgs, False)
        full = self._render(prefix_msgs + [user], True)
        if not full.startswith(prefix):
            raise ValueError("chat template does not render conversations incrementally")
        return full[len(prefix):]

    def turn_ids(self, content: list[dict], first: bool) -> list[int]:
        """Ids of a user turn rendered with each text in a slot: the template's text is encoded with
        its special tokens, each text as plain text, so no text can open, close or fake a turn."""
        texts: list[str] = []

        def slot(text: str) -> str:
            texts.append(text)
            return _SLOT.format(len(texts) - 1)

        slotted = [{**c, "text": slot(c["text"])} if c.get("type") == "text" else c for c in content]
        system = slot(self.system_prompt) if self.system_prompt else None
        key = (first, repr(slotted), system)  # the rendered turn depends on its shape, not on its texts
        if (layout := self._layouts.get(key)) is None:
            pieces = _SLOTS.split(self.render_turn(slotted, first, system))
            layout = self._layouts[key] = [int(piece) if i % 2 else self._encode_template(piece)  # odd: slots
                                           for i, piece in enumerate(pieces)]
        return [t for part in layout for t in (self.encode(texts[part]) if isinstance(part, int) else part)]

    def closing(self, last_token: int | None) -> list[int]:
        """Tokens that close the previous assistant turn, given its last generated token."""
        if last_token is None:
            return []
        if last_token == self.ids.im_end:
            return list(self.ids.newline)
        return [self.ids.im_end] + self.ids.newline

    # -- turns ---------------------------------------------------------------------------
    def chunk_turn(self, start: float, stop: float, n_video_tokens: int, query: str | None, first: bool) -> list[int]:
        """A video chunk's user turn with its `<|video_pad|>` expanded to `n_video_tokens`."""
        content = [{"type": "text", "text": time_text(start, stop)}, {"type": "video"}]
        if query:
            content.append({"type": "text", "text": query})
        ids = self.turn_ids(content, first)
        pads = [i for i, t in enumerate(ids) if t == self.ids.video_pad]
        if len(pads) != 1:
            raise ValueError(f"expected one video placeholder in the chunk turn, found {len(pads)}")
        at = pads[0]
        return ids[:at] + [self.ids.video_pad] * n_video_tokens + ids[at + 1:]

    def question_turn(self, question: str, first: bool = False) -> list[int]:
        return self.turn_ids([{"type": "text", "text": question}], first)
