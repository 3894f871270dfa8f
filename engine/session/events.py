"""Typed events the streaming session emits. Plain frozen dataclasses: the GUI carries them in
Qt signals, the CLI writes them to subtitles and JSONL, the speech player reads their text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Commentary:
    """The model's comment on one chunk of video [start, end) seconds. Empty text = silence."""

    start: float
    end: float
    text: str
    chunk_index: int


@dataclass(frozen=True)
class Answer:
    """An answer to a typed question, streamed: `text` is the answer so far; `done` on the last."""

    question: str
    text: str
    done: bool
    time: float  # video time (s) at which the question was asked
    recalled: tuple[tuple[float, float], ...] = ()  # [start, end) of each key frame recalled, in time order
    thumbnails: tuple = field(default=(), repr=False, compare=False)  # small RGB arrays, one per recalled moment
    note: str = ""  # e.g. GPU memory ran out and fewer key frames were recalled


@dataclass(frozen=True)
class Stats:
    """Per-chunk timings and state, for the status bar, the CLI and benchmarks."""

    chunk_index: int
    start: float
    end: float
    preprocess_ms: float
    vision_ms: float
    prefill_ms: float
    decode_ms: float
    new_tokens: int
    cache_tokens: int
    budget_tokens: int
    lag_ms: float  # live: how far the chunk's end trails the newest frame; file: how far behind real time
    frames_dropped: int
    chunks_skipped: int
    compactions: int = 0
    hidden_ms: float = 0.0  # preprocess/vision time that ran ahead, overlapped with the previous decode
    memory_key_frames: int = 0  # visual memory in use: key frames and MB of host memory
    memory_mb: float = 0.0

    @property
    def total_ms(self) -> float:
        """What the chunk cost the stream: its stages less the part that overlapped earlier work."""
        return self.preprocess_ms + self.vision_ms + self.prefill_ms + self.decode_ms - self.hidden_ms

    @property
    def context_fraction(self) -> float:
        return self.cache_tokens / self.budget_tokens if self.budget_tokens else 0.0


@dataclass(frozen=True)
class Compaction:
    """The session compacted its context to stay inside the KV budget."""

    time: float
    tokens_before: int
    tokens_after: int
    ms: float


@dataclass(frozen=True)
class StreamEnded:
    """The source is exhausted and every chunk has been processed."""

    time: float


@dataclass(frozen=True)
class Seek:
    """The source moved to `time` (a player's seek): a new conversation starts there."""

    time: float


Event = Commentary | Answer | Stats | Compaction | StreamEnded | Seek


def event_to_record(event: Event) -> dict:
    """A JSON-ready dict with a `type` field, used by the JSONL transcript and session files."""
    record = {"type": type(event).__name__.lower()}
    record.update(asdict(event))
    record.pop("thumbnails", None)  # pictures stay in the app; records carry the times
    return record
