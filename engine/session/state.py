"""Per-stream state the session keeps between steps: the conversation in the cache and a chunk made ready."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from engine.capture.sampler import Chunk
from engine.model.preprocess import VideoInputs


@dataclass
class PreparedChunk:
    """A chunk's frames as visual embeddings, made inline or ahead of time on a side stream."""

    chunk: Chunk
    video: VideoInputs
    embeds: torch.Tensor
    preprocess_ms: float = 0.0
    vision_ms: float = 0.0
    marks: tuple | None = None  # CUDA events (start, preprocessed, encoded) on the side stream

    def wait(self, device: torch.device) -> float:
        """Make the current stream wait for side-stream work; returns how much of it was hidden
        behind earlier work (ms)."""
        if self.marks is None:
            return 0.0
        start, preprocessed, encoded = self.marks
        t0 = time.perf_counter()
        encoded.synchronize()
        waited = (time.perf_counter() - t0) * 1e3
        torch.cuda.current_stream(device).wait_event(encoded)
        self.embeds.record_stream(torch.cuda.current_stream(device))
        self.preprocess_ms, self.vision_ms = start.elapsed_time(preprocessed), preprocessed.elapsed_time(encoded)
        return max(0.0, self.preprocess_ms + self.vision_ms - waited)


@dataclass
class ConversationState:
    """What the model has seen: token ids in the cache, the next free M-RoPE position, the token
    sampled last but not yet fed back (it opens the next segment), and the query in force."""

    tokens: list[int] = field(default_factory=list)
    next_pos: int = 0
    pending: int | None = None
    query_sent: str | None = None
    compactions: int = 0

    def reset(self) -> None:
        self.tokens.clear()
        self.next_pos, self.pending, self.query_sent = 0, None, None
