"""A session's settings: prompt, decoding, frame sampling, bounded context and visual memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.defaults import (ANSWER_TOKENS, COMMENT_TOKENS, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, DEFAULT_QUERY,
                             KV_BUDGET, MEMORY_MB, MEMORY_TOKENS, POSITION_RULES, POSITIONS, RECALL_K,
                             REPETITION_PENALTY, ROUTER_STRATEGY, VIDEO_WINDOW_S, min_kv_budget)
from engine.errors import ConfigValueError

from .decoding import SamplingConfig
from .memory import DEFAULT_MATCH_RATIO, DEFAULT_MAX_KEY_FRAMES
from .recall import check_memory_config


@dataclass
class SessionConfig:
    query: str = DEFAULT_QUERY
    system_prompt: str | None = None
    max_new_tokens: int = COMMENT_TOKENS
    answer_max_new_tokens: int = ANSWER_TOKENS
    repetition_penalty: float = REPETITION_PENALTY
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    eos_base: float = 0.0  # streaming-EOS threshold at decode step k: eos_base + eos_step * k
    eos_step: float = 0.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_pixels: int = DEFAULT_MIN_PIXELS
    fps: float = 2.0
    first_chunk_frames: int = 6
    chunk_frames: int = 2
    live: bool = False  # live sources skip to the newest frames when behind
    max_backlog_s: float = 2.0
    kv_budget: int = KV_BUDGET  # tokens in the KV cache; why this default: docs/bounded-context.md
    video_window_s: float = VIDEO_WINDOW_S  # seconds of video a compaction keeps
    memory_tokens: int = MEMORY_TOKENS  # text memory of earlier comments and answers kept by a compaction
    ignore_eos: bool = False  # benchmarks: always decode max_new_tokens
    positions: str = POSITIONS  # "demo": LiveCC demo's 1-D positions once the cache holds anything (model/rope.py)
    # Visual memory (engine/session/memory.py); the knob names are the key-frame-memory system's.
    memory: bool = True  # keep key frames of the video that left the window; recall them for questions
    memory_mb: float = MEMORY_MB  # pinned host memory for key frames
    key_frame_buffer_size: int = DEFAULT_MAX_KEY_FRAMES  # most key frames kept
    key_frame_match_ratio: float = DEFAULT_MATCH_RATIO  # pooled cosine at which a chunk joins the key frame
    topk: int = RECALL_K  # key frames recalled per question at most
    router_strategy: str = ROUTER_STRATEGY
    # Questions asked mid-stream (engine/session/questions.py):
    max_waiting_questions: int | None = None  # more are refused (a server's sessions: MAX_WAITING_QUESTIONS)
    note_unfit_questions: bool = True  # one that does not fit the budget gets a note (the evaluation: fails)

    def __post_init__(self):
        if self.positions not in POSITION_RULES:
            raise ValueError(f"positions must be one of {', '.join(POSITION_RULES)}, not {self.positions!r}")
        if self.first_chunk_frames % 2 or self.chunk_frames % 2 or self.chunk_frames < 2:
            raise ValueError("chunk frame counts must be even (Qwen2-VL packs 2 frames per temporal patch)")
        if self.max_new_tokens < 1 or self.answer_max_new_tokens < 1:
            raise ValueError("max new tokens must be >= 1")
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        if self.max_pixels < 28 * 28:
            raise ConfigValueError("max_pixels", self.max_pixels, "is too small: give at least 784 (28*28)")
        self.sampling()  # temperature, top_p, repetition penalty: checked here, with the rest
        if self.fps <= 0 or self.max_backlog_s <= 0:
            raise ValueError("fps and max_backlog_s must be positive")
        if not 0 < self.video_window_s < math.inf:
            raise ConfigValueError("video_window_s", self.video_window_s, "must be a finite number of seconds over 0")
        if self.memory_tokens < 0:
            raise ConfigValueError("memory_tokens", self.memory_tokens, "must be 0 or more")
        if self.kv_budget < min_kv_budget(self.memory_tokens, max(self.max_new_tokens, self.answer_max_new_tokens)):
            raise ValueError(f"kv_budget {self.kv_budget} is too small: it must exceed twice memory_tokens plus "
                             "the longest reply (a compaction keeps at most half the budget)")
        check_memory_config(self)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.repetition_penalty, self.seed)
