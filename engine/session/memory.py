"""Visual memory: key frames of the video that left the window, bounded in bytes.

Every chunk that leaves the video window arrives here with the visual embeddings already
computed for it (the vision tower never runs twice), its times, its reply and a small thumbnail.
Streaming clustering: a chunk whose pooled embedding is within `match_ratio` cosine of the
current key frame joins that cluster (the key frame stays its representative, its span grows);
otherwise it starts a new key frame. When the memory is over its byte or count bound, the two
most similar neighbouring key frames merge (the one that stands for more chunks stays, the span
covers both), so no stretch of time is ever forgotten outright.

Where the bytes live. A key frame's embeddings (one chunk: 364 tokens x 3584 bf16 = 2.6 MB at
1080p) live in pinned host memory and go to the GPU only when recalled. The routing index (one
pooled vector and a 4x4 spatial summary per key frame, 17 x 3584 values, 122 KB in bf16) stays
on the model's device in the embeddings' dtype, so routing is one small matmul there.

Why 1024 MB by default. An hour of changing 1080p video unmerged is 9.4 GB; 1 GB holds ~390
key frames, one per ~9 s of a never-repeating hour and far more for real footage (static scenes
merge), while pinned memory (page-locked, unswappable) stays a small share of a desktop's RAM.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from engine.defaults import MEMORY_MB as DEFAULT_MEMORY_MB

from .context import KeptChunk

DEFAULT_MAX_KEY_FRAMES = 1024  # `key_frame_buffer_size`: a count bound for small frames, where bytes bind late
DEFAULT_MATCH_RATIO = 0.9  # `key_frame_match_ratio`: pooled cosine at which a chunk joins the current key frame
SUMMARY_SIDE = 4  # the fine-routing summary: the token grid pooled to 4 x 4


@dataclass
class KeyFrame:
    """One representative chunk and the span of video [start, end) it stands for."""

    start: float
    end: float
    grid: tuple[int, int, int]
    embeds: torch.Tensor  # (n_tokens, hidden) in pinned host memory (plain host memory without CUDA)
    reply: list[int]  # the representative chunk's reply tokens (its comment)
    thumbnail: np.ndarray | None = None  # small RGB image of the representative's last frame
    chunks: int = 1  # how many chunks this key frame stands for
    copied: torch.cuda.Event | None = None  # the device-to-host copy's completion (CUDA only)

    @property
    def n_tokens(self) -> int:
        return int(self.embeds.shape[0])

    @property
    def nbytes(self) -> int:
        """Host bytes: the embeddings and the thumbnail."""
        picture = self.thumbnail.nbytes if self.thumbnail is not None else 0
        return self.embeds.numel() * self.embeds.element_size() + picture


@dataclass
class _Index:
    """Routing vectors of one key frame, on the model's device."""

    pooled: torch.Tensor  # (hidden,) unit norm, in the embeddings' dtype
    summary: torch.Tensor  # (SUMMARY_SIDE**2, hidden) unit norm rows, in the embeddings' dtype

    @property
    def nbytes(self) -> int:
        return (self.pooled.numel() + self.summary.numel()) * self.pooled.element_size()


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def pooled(embeds: torch.Tensor) -> torch.Tensor:
    """A chunk's tokens averaged, unit norm, in their dtype."""
    return unit(embeds.float().mean(0)).to(embeds.dtype)


def summarize(embeds: torch.Tensor, grid: tuple[int, int, int], merge: int = 2) -> torch.Tensor:
    """The spatial summary of a chunk's merged visual tokens: (SUMMARY_SIDE**2, hidden), unit rows."""
    t, h, w = grid[0], grid[1] // merge, grid[2] // merge
    spatial = embeds.float().reshape(t, h, w, -1).mean(0)  # (h, w, hidden)
    rows, cols = _bins(h, embeds.device), _bins(w, embeds.device)
    summary = torch.einsum("ih,hwd,jw->ijd", rows, spatial, cols).reshape(SUMMARY_SIDE ** 2, -1)
    return unit(summary).to(embeds.dtype)


@functools.lru_cache(maxsize=64)
def _bins(n: int, device: torch.device) -> torch.Tensor:
    """(SUMMARY_SIDE, n) averaging weights of adaptive average pooling (bins as torch computes them);
    a matmul, because CPU adaptive pooling of a channels-last grid costs milliseconds."""
    out = torch.zeros(SUMMARY_SIDE, n, device=device)
    for i in range(SUMMARY_SIDE):
        lo, hi = (i * n) // SUMMARY_SIDE, -(-((i + 1) * n) // SUMMARY_SIDE)
        out[i, lo:hi] = 1.0 / (hi - lo)
    return out


def _to_host(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """A host copy, page-locked when CUDA is there, and the event marking the asynchronous copy done."""
    if embeds.device.type != "cuda":
        return embeds.detach().to("cpu", copy=True), None
    host = torch.empty(embeds.shape, dtype=embeds.dtype, pin_memory=True)
    host.copy_(embeds, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()  # an upload on another stream (a question after run() ended) waits for it
    return host, copied


@dataclass
class KeyFrameMemory:
    """Key frames in time order with their routing index; bounded in bytes and in count."""

    max_bytes: int
    max_key_frames: int = DEFAULT_MAX_KEY_FRAMES
    match_ratio: float = DEFAULT_MATCH_RATIO
    merge: int = 2  # the vision tower's spatial merge: token grid = patch grid / merge
    frames: list[KeyFrame] = field(default_factory=list)
    index: list[_Index] = field(default_factory=list)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def mb(self) -> float:
        return self.nbytes / 2**20

    def device_bytes(self) -> int:
        """Bytes of the routing index on the device."""
        return sum(i.nbytes for i in self.index)

    def add(self, chunk: KeptChunk) -> None:
        """Take a chunk that left the video window: join the current key frame or start one."""
        vector = pooled(chunk.embeds)
        last = self.frames[-1] if self.frames else None
        if last is not None and last.grid == chunk.grid and self._similar(self.index[-1].pooled, vector):
            last.end = max(last.end, chunk.end)
            last.chunks += 1
            return
        host, copied = _to_host(chunk.embeds)
        frame = KeyFrame(chunk.start, chunk.end, chunk.grid, host, list(chunk.reply), chunk.thumbnail, copied=copied)
        self.frames.append(frame)
        self.index.append(_Index(vector, summarize(chunk.embeds, chunk.grid, self.merge)))
        self.nbytes += frame.nbytes
        while len(self.frames) > 1 and (self.nbytes > self.max_bytes or len(self.frames) > self.max_key_frames):
            self._merge_most_similar()

    def _similar(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return float(a.float() @ b.float()) >= self.match_ratio

    def _merge_most_similar(self) -> None:
        """Merge the most similar pair of neighbours; the key frame standing for more chunks stays."""
        pooled = torch.stack([i.pooled for i in self.index]).float()
        i = int((pooled[:-1] * pooled[1:]).sum(-1).argmax())  # first of the most similar neighbours
        a, b = self.frames[i], self.frames[i + 1]
        keep, drop = (i, i + 1) if a.chunks >= b.chunks else (i + 1, i)
        kept = self.frames[keep]
        kept.start, kept.end, kept.chunks = a.start, max(a.end, b.end), a.chunks + b.chunks
        self.nbytes -= self.frames[drop].nbytes
        del self.frames[drop], self.index[drop]

    def covers(self, start: float, end: float) -> bool:
        """Whether the key frames' spans cover [start, end) without a gap (tests, checks)."""
        t = start
        for frame in self.frames:
            if frame.start > t + 1e-6:
                return False
            t = max(t, frame.end)
        return t >= end - 1e-6

    def clear(self) -> None:
        self.frames.clear()
        self.index.clear()
        self.nbytes = 0
