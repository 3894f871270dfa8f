"""Defaults that the engine, the CLI and the desktop app share: one torch-free home, so a front end
imports them without loading the model's libraries (and never copies them)."""

DEFAULT_MODEL = "chenjoya/LiveCC-7B-Instruct"
PRECISIONS = ("auto", "none", "int8", "int4")  # engine/model/quantize.py; docs/quantization.md
DEFAULT_QUERY = "Please describe the video."

PIXEL_UNIT = 28 * 28  # Qwen2-VL resizes to multiples of 28: pixel budgets are counted in these units
DEFAULT_MAX_PIXELS = 384 * PIXEL_UNIT  # LiveCC's training budget per frame
DEFAULT_MIN_PIXELS = 100 * PIXEL_UNIT
MAX_PIXELS_LIMIT = 16384 * PIXEL_UNIT  # the ceiling of Qwen2-VL's own image processor
MAX_ASPECT_RATIO = 200  # Qwen2-VL's smart_resize refuses frames longer or thinner than this

REPETITION_PENALTY = 1.05  # LiveCC's demo; its evaluation uses 1.15 against repetition collapse
COMMENT_TOKENS = 16  # new tokens per 1-second comment (LiveCC: 16, its evaluation: 32)
ANSWER_TOKENS = 512  # new tokens per answer
KV_BUDGET = 16384  # tokens of KV cache before a compaction; docs/bounded-context.md says why
MAX_TEXT_CHARS = 4000  # a question or instructions at most (about 1000 tokens of English)
MAX_WAITING_QUESTIONS = 8  # questions asked and not yet being answered, a session

# SessionConfig's defaults and choices that the CLI's flags show: here, so `livecc --help` and a
# client-only install (no torch) build the same flags as the engine.
POSITION_RULES = ("exact", "demo")  # engine/model/rope.py
POSITIONS = "exact"
VIDEO_WINDOW_S = 16.0  # seconds of video a compaction keeps (StreamingVLM keeps 16 s)
MEMORY_TOKENS = 512  # text memory of earlier comments and answers kept by a compaction
ROUTER_STRATEGIES = ("cos_sim_coarse", "cos_sim_fine", "recent", "none")  # engine/session/router.py
ROUTER_STRATEGY = "cos_sim_fine"
RECALL_K = 8  # key frames recalled per question at most
MEMORY_MB = 1024.0  # pinned host memory for key frames; engine/session/memory.py says why


def min_pixels_for(max_pixels: int) -> int:
    """The smallest frame size for a pixel budget: Qwen2-VL's floor, never above the budget."""
    return min(max_pixels, DEFAULT_MIN_PIXELS)


def min_kv_budget(memory_tokens: int = MEMORY_TOKENS, longest_reply: int = ANSWER_TOKENS) -> int:
    """A compaction keeps at most half the budget, and that half must hold the text memory and the
    longest reply: the smallest budget that works."""
    return 2 * (memory_tokens + longest_reply) + 1
