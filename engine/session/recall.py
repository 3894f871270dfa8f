"""Recall: the visual memory's side of a question, as one object the session calls.

Before a question, the routed key frames go into the conversation in time order, each as a
chunk turn in LiveCC's training format (`Time=a-bs` with the key frame's span, its video, then
its comment as the assistant reply), then the question. After the answer, the session crops
the cache back to before the recall and re-appends the question and its answer, so commentary
goes on over a conversation that holds the Q&A but not the recalled video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.errors import ConfigValueError
from engine.model.prompt import PromptBuilder

from .memory import KeyFrame, KeyFrameMemory
from .router import STRATEGIES, Router

RECALL_SHARE = 4  # recalled video may take at most a quarter of the KV budget
THUMBNAIL_WIDTH = 96  # pixels; a 1080p frame's thumbnail is ~96x54 RGB, 15 KB


@dataclass(frozen=True)
class Recalled:
    """What a question recalled, in time order, and a note when fewer frames went in than chosen."""

    frames: list[KeyFrame] = field(default_factory=list)
    note: str = ""

    @property
    def times(self) -> tuple[tuple[float, float], ...]:
        return tuple((f.start, f.end) for f in self.frames)

    @property
    def thumbnails(self) -> tuple:
        return tuple(f.thumbnail for f in self.frames if f.thumbnail is not None)


@dataclass(frozen=True)
class Mark:
    """The conversation just before a recall: where to crop back to."""

    cache_length: int
    n_tokens: int
    next_pos: int
    pending: int | None
    seen: torch.Tensor  # the sampler's repetition-penalty set

    @classmethod
    def take(cls, state, runner, sampler) -> "Mark":
        return cls(runner.length, len(state.tokens), state.next_pos, state.pending, sampler.seen.clone())

    def rewind(self, state, runner, sampler) -> None:
        """Crop the cache and the conversation state back to the mark."""
        runner.crop(self.cache_length)
        del state.tokens[self.n_tokens:]
        state.next_pos, state.pending = self.next_pos, self.pending
        sampler.seen.copy_(self.seen)


def check_memory_config(config) -> None:
    """SessionConfig's visual-memory fields (called from its __post_init__)."""
    if not config.memory_mb > 0:
        raise ConfigValueError("memory_mb", config.memory_mb, "must be more than 0 (use --no-memory to turn memory off)")
    if config.topk < 0:
        raise ConfigValueError("topk", config.topk, "must be 0 or more")
    if config.key_frame_buffer_size < 1 or not 0 <= config.key_frame_match_ratio <= 1:
        raise ValueError("key_frame_buffer_size must be >= 1 and key_frame_match_ratio between 0 and 1")
    if config.router_strategy not in STRATEGIES:
        raise ValueError(f"router must be one of {', '.join(STRATEGIES)}, not {config.router_strategy!r}")


def thumbnail(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """A small copy of an RGB frame by striding (no resampling library; it only has to be recognisable)."""
    step = max(1, -(-image.shape[1] // width))
    return np.ascontiguousarray(image[::step, ::step])


class Recall:
    """The key-frame memory, its router, and the turns a recall puts before a question."""

    def __init__(self, memory: KeyFrameMemory, router: Router, prompt: PromptBuilder, device: torch.device):
        self.memory, self.router, self.prompt, self.device = memory, router, prompt, device
        # A turn's tokens besides its video and reply, at the longest times we expect (99999.9 s):
        # routing counts with this bound instead of rendering the chat template per candidate.
        self._overhead = len(self.turn(KeyFrame(99999.9, 99999.9, (1, 2, 2), torch.empty(0, 1), [0])))

    @classmethod
    def for_model(cls, model, prompt: PromptBuilder, config) -> "Recall":
        """From a SessionConfig: the question side is the LM's input embedding (see router.py)."""
        embed_tokens = model.model.language_model.embed_tokens
        device = embed_tokens.weight.device  # lm_head may be quantized; the embedding never is

        @torch.inference_mode()
        def embed(text: str) -> torch.Tensor:
            ids = prompt.encode(text) or [prompt.ids.im_end]  # an empty question still has a vector
            return embed_tokens(torch.tensor(ids, device=device))

        memory = KeyFrameMemory(int(config.memory_mb * 2**20), config.key_frame_buffer_size,
                                config.key_frame_match_ratio, model.config.vision_config.spatial_merge_size)
        return cls(memory, Router(config.router_strategy, config.topk, embed), prompt, device)

    def choose(self, question: str, now: float, before: float, budget: int) -> list[KeyFrame]:
        """Key frames for the question, best first (older than `before`, within `budget` tokens)."""
        return self.router.route(self.memory, question, now, before, budget, self.cost).frames

    def cost(self, frame: KeyFrame) -> int:
        """Tokens a key frame's turn takes at most."""
        return frame.n_tokens + len(frame.reply) + self._overhead

    def turn(self, frame: KeyFrame) -> list[int]:
        """A key frame as a chunk turn with its span's times, its comment as the reply, closed."""
        reply = frame.reply or [self.prompt.ids.im_end]
        turn = self.prompt.chunk_turn(frame.start, frame.end, frame.n_tokens, None, first=False)
        return turn + reply + self.prompt.closing(reply[-1])

    def turns(self, frames: list[KeyFrame]) -> list[int]:
        return [t for f in in_time_order(frames) for t in self.turn(f)]

    def upload(self, frames: list[KeyFrame]) -> torch.Tensor | None:
        """The key frames' embeddings on the device, in time order (from pinned memory: asynchronous)."""
        if not frames:
            return None
        for f in frames:
            if f.copied is not None:
                torch.cuda.current_stream(self.device).wait_event(f.copied)
        return torch.cat([f.embeds.to(self.device, non_blocking=True) for f in in_time_order(frames)])

    @staticmethod
    def grids(frames: list[KeyFrame]) -> list[tuple[int, int, int]]:
        return [f.grid for f in in_time_order(frames)]

    @staticmethod
    def budget(config, question_cost: int) -> int:
        """Tokens recalled video may take: a share of the KV budget that leaves room for the question and
        its answer (`question_cost`) and a compaction's text memory."""
        kv = config.kv_budget
        return max(0, min(kv // RECALL_SHARE, kv - question_cost - config.memory_tokens - 16))


def in_time_order(frames: list[KeyFrame]) -> list[KeyFrame]:
    return sorted(frames, key=lambda f: f.start)
