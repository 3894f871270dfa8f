"""Bounded context: the KV budget, the text memory, the recent video window, and the compact
conversation the session re-prefills when the next step would not fit in the budget.

Re-prefill, not in-place eviction: the cache stays exactly what the model computes for the compact
conversation, in its training format, with room for the text memory (docs/bounded-context.md has the
budget's reasoning and the measured comparison).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import LiveCCError
from engine.model.prompt import PromptBuilder

MEMORY_SEPARATOR = "\n\n"  # LiveCC's with_context format: query, empty title line, previous text


class ContextBudgetError(LiveCCError):
    """One chunk (or question and answer) does not fit in the KV budget even after compaction."""


@dataclass(frozen=True)
class KeptChunk:
    """One chunk of the recent video window: all a compaction needs to re-prefill it without
    running the vision tower again."""

    index: int
    start: float
    end: float
    turn: list[int]  # its user turn as a later chunk (no system prompt, no query) + assistant prompt
    grid: tuple[int, int, int]  # (t, h, w) patches
    embeds: torch.Tensor  # (n_video_tokens, hidden) merged visual embeddings from encode_video
    reply: list[int]  # every token generated for it; the last one closes the reply
    thumbnail: np.ndarray | None = None  # a small RGB picture of it, for the visual memory's recalled moments

    @property
    def n_video_tokens(self) -> int:
        return int(self.embeds.shape[0])


@dataclass(frozen=True)
class MemoryEntry:
    """A line of the text memory: a comment on a chunk, or a question and its answer."""

    time: float
    text: str
    chunk_index: int | None  # None for a question and answer
    n_tokens: int  # tokens of `line()`, counted once when added

    def line(self) -> str:
        return memory_line(self.time, self.text)


def memory_line(time: float, text: str) -> str:
    return f"[{time:.1f}s] {text}"


class TextMemory:
    """Recent commentary and answers as text. Bounded in entries; selected bounded in tokens, with
    questions and answers first (up to half the tokens: the user asked for them), then comments."""

    def __init__(self, max_tokens: int, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
                 max_entries: int = 512):
        self.max_tokens = max_tokens
        self._encode, self._decode = encode, decode
        self._entries: deque[MemoryEntry] = deque(maxlen=max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, time: float, text: str, chunk_index: int | None = None) -> None:
        text = " ".join(text.split())  # one line per entry
        if not text or self.max_tokens <= 0:
            return
        cap = self.max_tokens // 2 - 1  # a long answer (and its line break) leaves room for the rest
        ids = self._encode(memory_line(time, text))
        if len(ids) > cap:
            text = self._decode(ids[:cap]).removeprefix(memory_line(time, "")).strip()
            ids = self._encode(memory_line(time, text))
        self._entries.append(MemoryEntry(time, text, chunk_index, len(ids)))

    def add_answer(self, time: float, question: str, answer: str) -> None:
        self.add(time, f"Q: {question} A: {answer}")

    def clear(self) -> None:
        self._entries.clear()

    def recent(self, exclude_chunks: set[int]) -> list[MemoryEntry]:
        """The newest answers, then the newest comments, in time order, whose text fits in
        `max_tokens`; comments on chunks still in the video window are left out (the model sees
        their replies)."""
        answers = self._newest([e for e in self._entries if e.chunk_index is None], self.max_tokens // 2)
        used = sum(e.n_tokens + 1 for e in answers)
        comments = [e for e in self._entries if e.chunk_index is not None and e.chunk_index not in exclude_chunks]
        picked = sorted(answers + self._newest(comments, self.max_tokens - used), key=lambda e: e.time)
        while picked and len(self._encode(memory_text(picked))) > self.max_tokens:
            picked.pop(0)  # counted per line; the joined text is checked once
        return picked

    @staticmethod
    def _newest(entries: list[MemoryEntry], tokens: int) -> list[MemoryEntry]:
        picked: list[MemoryEntry] = []
        for entry in reversed(entries):
            tokens -= entry.n_tokens + 1  # + the line break
            if tokens < 0:
                break
            picked.append(entry)
        return picked


def memory_text(entries: list[MemoryEntry]) -> str:
    return "\n".join(e.line() for e in entries)


def opening_text(query: str, memory: list[MemoryEntry]) -> str:
    """The text after the video of a conversation's first chunk: the query, then the memory."""
    return query + MEMORY_SEPARATOR + memory_text(memory) if memory else query


class VideoWindow:
    """The last `seconds` of chunks with their embeddings; older chunks drop out as new ones come,
    each handed to `on_leave` (the visual memory) as it goes. With `max_tokens` (half the KV budget,
    what a compaction keeps at most), the oldest chunk also drops out once the window's video and reply
    tokens pass that: no compaction could keep it, so a long window holds no more than that."""

    def __init__(self, seconds: float, max_chunks: int, on_leave: Callable[[KeptChunk], None] | None = None,
                 max_tokens: int | None = None):
        self.seconds = seconds
        self.max_chunks = max_chunks
        self.on_leave = on_leave
        self.max_tokens = max_tokens
        self._chunks: deque[KeptChunk] = deque()

    def __len__(self) -> int:
        return len(self._chunks)

    def add(self, chunk: KeptChunk) -> None:
        self._chunks.append(chunk)
        while (len(self._chunks) > self.max_chunks or self._chunks[0].end <= chunk.end - self.seconds
               or self._over_tokens()):
            left = self._chunks.popleft()
            if self.on_leave is not None:
                self.on_leave(left)

    def _over_tokens(self) -> bool:
        """The chunks hold more than `max_tokens` (counting what each costs a compact conversation at
        least: its video and its reply), so the oldest could be kept only with more. The newest stays."""
        if self.max_tokens is None or len(self._chunks) < 2:
            return False
        return sum(c.n_video_tokens + len(c.reply) for c in self._chunks) > self.max_tokens

    def recent(self, now: float) -> list[KeptChunk]:
        """Chunks that end within the last `seconds` before `now`, oldest first."""
        return [c for c in self._chunks if c.end > now - self.seconds]

    def clear(self) -> None:
        self._chunks.clear()


@dataclass(frozen=True)
class CompactContext:
    """What a compaction keeps, in conversation order:

    system prompt; user: Time=a-b s, first kept chunk's video, the query, a blank line and the
    text memory (LiveCC's with_context format); assistant: that chunk's reply; then each later
    kept chunk's usual user turn and reply. The last reply's final token is left pending, so the
    next segment closes it exactly as in an uncompacted conversation. No chunk kept: empty.
    """

    query: str
    memory: list[MemoryEntry]
    chunks: list[KeptChunk]

    def token_ids(self, prompt: PromptBuilder) -> tuple[list[int], int | None]:
        """Ids of the compact conversation without its last token, and that (pending) token."""
        ids: list[int] = []
        for i, chunk in enumerate(self.chunks):
            if i == 0:
                first = opening_text(self.query, self.memory)
                ids += prompt.chunk_turn(chunk.start, chunk.end, chunk.n_video_tokens, first, first=True)
            else:
                ids += prompt.closing(ids[-1]) + chunk.turn
            ids += chunk.reply
        if not ids:
            return [], None
        return ids[:-1], ids[-1]

    @property
    def grids(self) -> list[tuple[int, int, int]]:
        return [c.grid for c in self.chunks]

    def video_embeds(self) -> torch.Tensor | None:
        return torch.cat([c.embeds for c in self.chunks]) if self.chunks else None


class BoundedContext:
    """The KV budget policy: when to compact and what a compaction keeps."""

    def __init__(self, prompt: PromptBuilder, budget: int, window_s: float, memory_tokens: int, chunk_s: float,
                 on_leave: Callable[[KeptChunk], None] | None = None):
        self.prompt = prompt
        self.budget = budget
        self.memory = TextMemory(memory_tokens, prompt.encode, prompt.tokenizer.decode)
        self.window = VideoWindow(window_s, int(window_s / chunk_s) + 2, on_leave, max_tokens=budget // 2)
        self.last: CompactContext | None = None  # what the latest compaction kept (tests, debugging)
        self.video_from = 0.0  # video time of the oldest chunk the cache holds (what recall may skip)

    def fits(self, cache_tokens: int, segment_tokens: int, max_new: int) -> bool:
        """The cache after prefilling the segment and decoding `max_new` tokens stays in budget."""
        return cache_tokens + segment_tokens + max_new <= self.budget

    def plan(self, query: str, now: float, reserve: int) -> CompactContext:
        """The compact conversation: the video window before `now` and the memory of what is not
        in it, trimmed (oldest chunks first) to half the budget so compactions stay rare, and to
        leave `reserve` tokens for the step that asked for room."""
        limit = min(self.budget // 2, self.budget - reserve)
        chunks = self.window.recent(now)
        while True:
            memory = self.memory.recent({c.index for c in chunks})
            plan = CompactContext(query, memory, chunks)
            if not chunks or len(plan.token_ids(self.prompt)[0]) <= limit:
                self.last = plan
                self.video_from = chunks[0].start if chunks else now
                return plan
            chunks = chunks[1:]

    def opening(self, query: str) -> str:
        """Query text for a conversation's first chunk turn: after a compaction that kept no
        chunk, the memory rides along with it."""
        return opening_text(query, self.memory.recent(set()))

    def clear(self) -> None:
        self.memory.clear()
        self.window.clear()  # its chunks are dropped, not remembered: a reset forgets the visual memory too
        self.last = None
        self.video_from = 0.0  # nothing is recalled until a compaction drops video from the cache
