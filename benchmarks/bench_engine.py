"""GPU benchmark of the streaming engine: one command, no download.

    python benchmarks/bench_engine.py --seconds 60 [--long 600] [--model PATH] [--out DIR] [--quantize int8 int4]
    python benchmarks/bench_engine.py --smoke   # the quantized rows at a toy shape on the CPU: checks the script

Builds the LiveCC-7B architecture (Qwen2-VL-7B config) with random bf16 weights on the GPU (or
loads real weights with --model), measures the device's matmul rate and copy bandwidth, streams a
synthetic 1080p 30 fps source through the real StreamingSession at 2 fps with exactly 16 decoded
tokens per chunk, and streams the same video through the plain transformers loop (`generate()`
continuing the cache chunk by chunk, as LiveCC's demo does) in the same run. Also checks on a
small fp32 model that the fast path emits the reference's greedy tokens. `--long N` adds an
N-second run across compactions (p50/p99/max chunk time, peak memory per minute).
`--quantize int8 int4` adds a row set per precision on the same random weights, each against its own
floor (the packed bytes over the copy bandwidth), and the relative logit error and greedy-token
agreement against bf16 over the same stream (teacher-forced: bf16 picks every token). These rows
always use random weights, --model or not: their error shows how quantization error grows through
the random layers, not answer quality.
Writes JSON and a markdown table to --out (and $OUT when set).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine.session.events import Compaction, Stats  # noqa: E402
from engine.capture.frames import Frame, RingBuffer  # noqa: E402
from engine.model.loading import LoadedModel, load_model  # noqa: E402
from engine.model.preprocess import preprocess_frames  # noqa: E402
from engine.model.quantize import QuantLinear, quantize_model  # noqa: E402
from engine.model.prompt import PromptBuilder  # noqa: E402
from engine.runtime.reference import EagerRunner  # noqa: E402
from engine.session.session import FrameSampler, SessionConfig, StreamingSession  # noqa: E402
from engine.session.steps import drive  # noqa: E402
from engine.model.tiny import build_tokenizer, tiny_config  # noqa: E402
from videos import synthetic_frame  # noqa: E402

QWEN2_VL_7B = dict(
    text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
              num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rms_norm_eps=1e-6,
              rope_theta=1_000_000.0, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14,
                temporal_patch_size=2, spatial_merge_size=2, in_channels=3),
)


# -- the device ------------------------------------------------------------------------------
def timed(fn, reps: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of fn() with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def decode_replay_ms(runner) -> tuple[float, int] | None:
    """The graphed greedy decode step alone (GPU time only, median ms) at slot 8127, and its
    attention width; None without graphs. Each replay advances the run's state, so each starts
    from the same state again (one 48-byte device copy)."""
    graphs = next(iter(runner._pick_graphs.values()), None) if runner.supports_picks else None
    if not graphs:
        return None
    slot = min(8127, runner.cache.capacity - 1)
    width = runner._width(slot)
    start = torch.tensor([5, slot, slot, 1, 0, 0], device=runner.device)

    def step():
        runner._pick_state.values.copy_(start)
        graphs[width]()

    return timed(step, reps=50), width


def decode_alone_ms(session: StreamingSession, context: int = 8192, tokens: int = 16, reps: int = 20) -> float | None:
    """The session's own greedy decode of a `tokens`-token comment at `context` tokens of cached
    stream, with nothing else on the GPU (in the stream, the next chunk's vision runs alongside on
    the side stream): median ms per token over `reps` comments. None below that context."""
    runner = session.runner
    if runner.length < context:
        return None
    vocab = session.sampler.seen.numel()
    logits = torch.randn(vocab, device=session.device, generator=torch.Generator(session.device).manual_seed(0))
    times = []
    for _ in range(reps + 2):  # two warm-ups
        runner.crop(context)
        session.state.next_pos = context
        _sync_device()
        t0 = time.perf_counter()
        list(drive(session._reply(logits, tokens, commentary=True), runner))
        _sync_device()
        times.append((time.perf_counter() - t0) * 1e3 / tokens)
    return statistics.median(times[2:])


def _sync_device() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_label(device: str | torch.device) -> str:
    """The GPU's name for a CUDA device, else the CPU's (the benchmarks' file stamps and headings)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def device_ceilings() -> dict:
    n = 8192
    x, y = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    mm_ms = timed(lambda: x @ y)
    src = torch.randn(256 * 1024 * 1024, device="cuda", dtype=torch.float32)  # 1 GiB
    dst = torch.empty_like(src)
    copy_ms = timed(lambda: dst.copy_(src))
    del x, y, src, dst
    return {"matmul_tflops": 2 * n ** 3 / mm_ms / 1e9, "copy_tb_s": 2 * 1024 ** 3 / copy_ms / 1e9,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__}


# -- models ----------------------------------------------------------------------------------
def build_random(shape: str, dtype: torch.dtype, device: str) -> LoadedModel:
    """Random weights with a locally trained tokenizer (no download). shape: '7b' or 'small'."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = _tokenizer()
    config, _ = tiny_config(tokenizer)
    if shape == "7b":
        tc = config.text_config
        text = dict(QWEN2_VL_7B["text"], bos_token_id=tc.bos_token_id, eos_token_id=tc.eos_token_id,
                    pad_token_id=tc.pad_token_id)
        config = Qwen2VLConfig(text_config=text, vision_config=QWEN2_VL_7B["vision"],
                               image_token_id=config.image_token_id, video_token_id=config.video_token_id,
                               vision_start_token_id=config.vision_start_token_id,
                               vision_end_token_id=config.vision_end_token_id)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return LoadedModel(model.eval(), tokenizer, torch.device(device), dtype, f"random-{shape}", ["attention: sdpa"])


@functools.lru_cache(maxsize=1)
def _tokenizer():
    """Trained once per run: the quantized rows build the same random model several times."""
    return build_tokenizer()


# -- the stream ------------------------------------------------------------------------------
class SyntheticSource:
    """1080p 30 fps frames into a ring buffer as fast as the consumer takes them (16 distinct
    pre-rendered frames, cycled, each stamped with its own time)."""

    def __init__(self, seconds: float, fps: float = 30.0, size=(1080, 1920)):
        self.seconds, self.fps = seconds, fps
        self.images = [synthetic_frame(t * 0.37, size[1], size[0]) for t in range(16)]
        self.thread: threading.Thread | None = None

    def start(self, buffer: RingBuffer, sample_fps: float = 2.0) -> None:
        def run():
            step = max(1, round(self.fps / sample_fps))  # what FileSource(sample_fps=2) delivers
            for i in range(0, int(self.seconds * self.fps), step):
                if not buffer.put(Frame(self.images[(i // step) % 16], i / self.fps), block=True):
                    return
            buffer.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


def run_engine(loaded: LoadedModel, seconds: float, config: SessionConfig, runner=None, size=(1080, 1920)):
    """Stream through the real session. Returns per-chunk Stats, each chunk's compaction stall (ms,
    0 when none: the stall delays that chunk), GPU memory samples (0 on CPU), and the session."""
    session = StreamingSession(loaded, config, runner=runner)
    buffer = RingBuffer(64)
    SyntheticSource(seconds, size=size).start(buffer)
    stats, stalls, memory = [], [], []
    stall, minute = 0.0, 0
    _reset_peak()
    for event in session.run(buffer):
        if isinstance(event, Compaction):
            stall += event.ms
        elif isinstance(event, Stats):
            stats.append(event)
            stalls.append(stall)
            stall = 0.0
            memory.append((event.end, event.cache_tokens, _peak_gb()))
            if int(event.end // 60) > minute:  # peaks per minute of video
                minute = int(event.end // 60)
                _reset_peak()
    return stats, stalls, memory, session


def run_cold_then_warm(loaded: LoadedModel, seconds: float, config: SessionConfig):
    """The stream twice over one runner: a cold run (graphs captured as sizes first repeat, as in
    an app's first minute), then the measured warm one. Returns the warm run (`run_engine`'s
    tuple) with its memory samples joined by the cold run's (captures peak there), and the cold
    run's chunk times."""
    cold_stats, cold_stalls, cold_memory, session = run_engine(loaded, seconds, config)
    total = chunk_totals(cold_stats, cold_stalls)[1:]
    cold = {"total_ms_p50": pct(total, 50), "total_ms_p95": pct(total, 95), "total_ms_max": max(total)}
    del session
    stats, stalls, memory, session = run_engine(loaded, seconds, config)
    return stats, stalls, cold_memory + memory, session, cold


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _reserved_gb() -> float:
    """What the allocator holds from the GPU (CUDA-graph pools included; tensors alone are
    `_peak_gb`): nothing here frees cached memory during a run, so this is the run's peak."""
    return torch.cuda.max_memory_reserved() / 1e9 if torch.cuda.is_available() else 0.0


def _peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0


def chunk_totals(stats: list[Stats], stalls: list[float]) -> list[float]:
    """What each chunk cost the stream: its stages plus any compaction it waited for."""
    return [s.total_ms + stall for s, stall in zip(stats, stalls)]


def run_plain_transformers(loaded: LoadedModel, seconds: float, cfg: SessionConfig) -> list[dict]:
    """LiveCC demo's loop: generate() per chunk with the growing input ids and cache; positions
    left to transformers (1-D after the first chunk). Same frames, same prompt tokens."""
    model, prompt = loaded.model, PromptBuilder(loaded.tokenizer)
    sampler = FrameSampler(cfg.fps, cfg.first_chunk_frames, cfg.chunk_frames)
    buffer = RingBuffer(64)
    SyntheticSource(seconds).start(buffer)
    past_ids, cache, out = None, None, []
    while (chunk := _wait_chunk(sampler, buffer)) is not None:
        t0 = time.perf_counter()
        video = preprocess_frames(chunk.frames, loaded.device, cfg.max_pixels, cfg.min_pixels)
        turn = prompt.chunk_turn(chunk.start, chunk.end, video.num_tokens, cfg.query if past_ids is None else None,
                                 first=past_ids is None)
        ids = torch.tensor([(prompt.closing(int(past_ids[0, -1])) if past_ids is not None else []) + turn],
                           device=loaded.device)
        input_ids = ids if past_ids is None else torch.cat([past_ids, ids], dim=1)
        with torch.inference_mode():
            gen = model.generate(input_ids=input_ids, pixel_values_videos=video.pixel_values_videos,
                                 video_grid_thw=video.video_grid_thw, past_key_values=cache,
                                 max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.max_new_tokens,
                                 do_sample=False, repetition_penalty=cfg.repetition_penalty,
                                 return_dict_in_generate=True, pad_token_id=loaded.tokenizer.pad_token_id)
        torch.cuda.synchronize()
        cache, past_ids = gen.past_key_values, gen.sequences[:, :-1]
        out.append({"end": chunk.end, "total_ms": (time.perf_counter() - t0) * 1e3, "context": past_ids.shape[1]})
    return out


def _wait_chunk(sampler: FrameSampler, buffer: RingBuffer):
    while True:
        chunk = sampler.take(buffer, False, 2.0)
        if chunk is not None or buffer.closed:
            return chunk
        buffer.wait(timeout=0.5)


# -- floors ----------------------------------------------------------------------------------
def floors(model, ceilings: dict, context: int, chunk_tokens: int, patches: int) -> dict:
    """Lower bounds on this device: bytes / copy bandwidth or flops / matmul rate."""
    bw, rate = ceilings["copy_tb_s"] * 1e12, ceilings["matmul_tflops"] * 1e12
    vision_params = sum(p.numel() for p in model.model.visual.parameters())
    lm_params = sum(p.numel() for p in model.parameters()) - vision_params
    cfg = model.config.text_config
    kv_bytes_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 2
    decode = (lm_params * 2 + context * kv_bytes_per_token) / bw
    vision = 2 * vision_params * patches / rate
    prefill = max(2 * lm_params * chunk_tokens / rate, lm_params * 2 / bw)
    return {"decode_ms": decode * 1e3, "vision_ms": vision * 1e3, "prefill_ms": prefill * 1e3,
            "chunk_ms": (vision + prefill + 16 * decode) * 1e3, "weights_gb": (lm_params + vision_params) * 2 / 1e9}


def pct(values, q) -> float:
    """The q-th percentile (NaN for no values): every benchmark's p50/p95/p99."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(stats: list[Stats], stalls: list[float]) -> dict:
    steady = stats[1:]  # the 3 s first chunk is a one-off
    total = chunk_totals(stats, stalls)[1:]
    near8k = min(steady, key=lambda s: abs(s.cache_tokens - 8192))
    return {
        "chunks": len(stats),
        "preprocess_ms_p50": pct([s.preprocess_ms for s in steady], 50),
        "vision_ms_p50": pct([s.vision_ms for s in steady], 50),
        "prefill_ms_p50": pct([s.prefill_ms for s in steady], 50),
        "decode_ms_per_token_p50": pct([s.decode_ms / max(1, s.new_tokens) for s in steady], 50),
        "decode_ms_per_token_at_8k": near8k.decode_ms / max(1, near8k.new_tokens),
        "context_at_8k_sample": near8k.cache_tokens,
        "total_ms_p50": pct(total, 50), "total_ms_p95": pct(total, 95), "total_ms_p99": pct(total, 99),
        "latency_ms_p50": pct([s.total_ms + s.hidden_ms for s in steady], 50),  # no overlap: all stages
        "overlapped_chunks": sum(1 for s in steady if s.hidden_ms > 0),
        "hidden_ms_p50": pct([s.hidden_ms for s in steady], 50),
        "total_ms_max": max(total), "p95_over_p50": pct(total, 95) / pct(total, 50),
        "realtime_factor": 1000.0 / statistics.mean(total),
        "max_context": max(s.cache_tokens for s in stats), "compactions": stats[-1].compactions,
    }


# -- same tokens on the GPU ------------------------------------------------------------------
def same_tokens_check(precision: str = "none") -> dict:
    from test_fast_path import run_tokens  # the CI test's own procedure, here with CUDA graphs

    from engine.runtime.fast import StaticRunner

    loaded = build_random("small", torch.float32, "cuda")
    quantize_model(loaded.model, precision)  # "none" leaves it as is
    fast = run_tokens(loaded, StaticRunner(loaded.model, 4096))
    ref = run_tokens(loaded, EagerRunner(loaded.model))
    return {"same_tokens": fast == ref, "tokens_compared": len(ref[0]), "cuda_graphs": True, "precision": precision}


def flash_decode_check() -> dict:
    """The Triton flash-decoding kernel against float64 attention, on fresh random data."""
    from engine.runtime.triton_attention import FlashDecode

    errors = {}
    for dtype in (torch.float32, torch.bfloat16):
        cap = 16392
        flash = FlashDecode(4, 7, 128, cap, torch.device("cuda"))
        for length in (1, 77, 5000, cap):
            q = torch.randn(4, 7, 128, device="cuda", dtype=dtype)
            k, v = (torch.randn(4, cap, 128, device="cuda", dtype=dtype) for _ in range(2))
            out = flash(q, k, v, torch.tensor([length], device="cuda"), 128 ** -0.5)
            ref = torch.softmax(q.double() @ k[:, :length].double().transpose(1, 2) * 128 ** -0.5, -1) @ v[:, :length].double()
            errors[f"{str(dtype)[6:]}@{length}"] = ((out.double() - ref).norm() / ref.norm()).item()
    ok = all(e < (1e-5 if "float32" in name else 2e-2) for name, e in errors.items())
    if not ok:
        raise SystemExit(f"flash-decoding kernel disagrees with the reference: {errors}")
    return {"relative_error": errors, "ok": ok}


# -- quantized rows --------------------------------------------------------------------------
class ShadowRunner:
    """Feeds a second runner every call of the first (the bf16 run picks every token: teacher
    forcing) and records how far the second's logits land from the first's."""

    name = "shadow"
    supports_picks = supports_prefill_graphs = False  # feeds both runners token by token

    def __init__(self, lead, shadow):
        self.lead, self.shadow = lead, shadow
        self.errors: list[float] = []
        self.agree: list[bool] = []
        self.vision_misses = 0  # segments whose video the shadow saw through the lead's vision tower
        self._embeds: dict[int, torch.Tensor] = {}

    @property
    def device(self):
        return self.lead.device

    @property
    def length(self) -> int:
        return self.lead.length

    def reset(self) -> None:
        self.lead.reset()
        self.shadow.reset()

    def encode_video(self, video):
        embeds = self.lead.encode_video(video)
        self._embeds[embeds.data_ptr()] = self.shadow.encode_video(video)
        return embeds

    def prefill(self, ids, positions, embeds):
        own = None
        if embeds is not None:
            own = self._embeds.pop(embeds.data_ptr(), None)
            self.vision_misses += own is None
        return self._compare(self.lead.prefill(ids, positions, embeds),
                             self.shadow.prefill(ids, positions, embeds if own is None else own))

    def decode(self, token: int, position: int):
        return self._compare(self.lead.decode(token, position), self.shadow.decode(token, position))

    def _compare(self, lead, shadow):
        self.errors.append(((shadow - lead).norm() / lead.norm()).item())
        self.agree.append(bool(shadow.argmax() == lead.argmax()))
        return lead


def quantized_model(precision: str, shape: str, dtype: torch.dtype, device: str) -> LoadedModel:
    """The same random weights as build_random, quantized in place (their float copies freed)."""
    loaded = build_random(shape, dtype, device)
    quantize_model(loaded.model, precision)
    loaded.name, loaded.precision = f"{loaded.name}-{precision}", precision
    _free()
    return loaded


def _free() -> None:
    if torch.cuda.is_available():  # what the next row's peak memory must not count
        gc.collect()
        torch.cuda.empty_cache()


def quant_floors(model, ceilings: dict, context: int, bf16_floors: dict) -> dict:
    """Decode reads the language model's packed weights and the KV; the rest as for bf16."""
    bw = ceilings["copy_tb_s"] * 1e12
    packed = sum(m.nbytes() for name, m in model.named_modules()
                 if isinstance(m, QuantLinear) and ".visual." not in f".{name}")
    cfg = model.config.text_config
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 2
    decode = (packed + context * kv) / bw * 1e3
    chunk = bf16_floors["vision_ms"] + bf16_floors["prefill_ms"] + 16 * decode
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {"decode_ms": decode, "chunk_ms": chunk, "weights_gb": weights / 1e9, "lm_packed_gb": packed / 1e9}


def quant_row(precision: str, args, ceilings: dict, bf16_floors: dict) -> dict:
    """Speed and peak memory of one precision over the stream, then its quality against bf16."""
    loaded = quantized_model(precision, args.shape, args.dtype, args.device)
    cfg = SessionConfig(ignore_eos=True, max_new_tokens=16, kv_budget=args.budget, **args.pixels)
    stats, stalls, memory, session, cold = run_cold_then_warm(loaded, args.seconds, cfg)
    row = dict(summarize(stats, stalls), cold=cold)
    row["peak_memory_gb"], row["reserved_gb"] = max(m[2] for m in memory), _reserved_gb()
    row["floors"] = quant_floors(loaded.model, ceilings, 8192, bf16_floors)
    row["decode_alone_ms"] = decode_alone_ms(session)
    if (replay := decode_replay_ms(session.runner)) is not None:
        row["decode_graph_replay_ms"] = replay[0]
    print(precision, row, flush=True)
    del session, loaded
    _free()
    row["quality"] = quant_quality(precision, args)
    print(precision, "quality", row["quality"], flush=True)
    return row


def quant_quality(precision: str, args) -> dict:
    from engine.runtime.reference import make_runner

    lead, shadow = build_random(args.shape, args.dtype, args.device), quantized_model(precision, args.shape,
                                                                                      args.dtype, args.device)
    budget = args.quality_budget
    runner = ShadowRunner(make_runner(lead.model, budget + 8), make_runner(shadow.model, budget + 8))
    cfg = SessionConfig(ignore_eos=True, max_new_tokens=16, kv_budget=budget, **args.pixels)
    stats, _, _, _ = run_engine(lead, args.seconds, cfg, runner=runner)
    out = {"steps": len(runner.errors), "relative_logit_error_mean": statistics.mean(runner.errors),
           "relative_logit_error_p95": pct(runner.errors, 95), "greedy_agreement": statistics.mean(runner.agree),
           "compactions": stats[-1].compactions, "vision_misses": runner.vision_misses,
           "max_context": max(s.cache_tokens for s in stats), "weights": lead.name,
           "layers": lead.model.config.text_config.num_hidden_layers}
    del runner, lead, shadow
    _free()
    return out


# -- main ------------------------------------------------------------------------------------
def quant_markdown(result: dict) -> tuple[list[str], list[str]]:
    """Table rows and notes for the quantized precisions."""
    rows, notes = [], []
    for p, q in result.get("quantized", {}).items():
        f = q["floors"]
        for name, ms, floor in ((f"decode per token at ~8k context, alone, {p}", q.get("decode_alone_ms"), f["decode_ms"]),
                                (f"decode per token at ~8k context, in the stream, {p}", q["decode_ms_per_token_at_8k"],
                                 f["decode_ms"]),
                                (f"one 1-s chunk, 16 tokens (p50), {p}", q["total_ms_p50"], f["chunk_ms"]),
                                (f"one 1-s chunk, 16 tokens (p95), {p}", q["total_ms_p95"], f["chunk_ms"])):
            if ms is not None:
                digits = 2 if name.startswith("decode") else 1  # decode targets are in tenths of a ms
                rows.append(f"| {name} | {ms:.{digits}f} | {floor:.{digits}f} | {ms / floor:.2f} | | |")
        qa = q["quality"]
        notes.append(f"{p}: {_cold(q)}; peak GPU memory {q['peak_memory_gb']:.1f} GB{_reserved(q)} at up to {q['max_context']} "
                     f"tokens of context (weights {f['weights_gb']:.1f} GB, language model packed {f['lm_packed_gb']:.2f} GB); "
                     f"against bf16 on the same {_weights_label(qa)} over the same {result['seconds']:.0f} s stream "
                     f"(teacher-forced, {qa['steps']} steps): relative logit error {qa['relative_logit_error_mean']:.3f} "
                     f"mean / {qa['relative_logit_error_p95']:.3f} p95, greedy-token agreement "
                     f"{qa['greedy_agreement'] * 100:.1f}%" + _random_caveat(qa)
                     + (f"; fast path = reference tokens on a small fp32 model: {q['same_tokens']['same_tokens']}."
                        if "same_tokens" in q else "."))
    return rows, notes


def _cold(row: dict) -> str:
    """The first stream's chunk times: it captures the CUDA graphs as each size first repeats."""
    c = row.get("cold")
    if not c:
        return "no cold run recorded"
    return (f"cold (graph captures included), took {c['total_ms_p50']:.1f} ms p50 / {c['total_ms_p95']:.1f} ms p95 / "
            f"{c['total_ms_max']:.0f} ms max per chunk")


def _reserved(row: dict) -> str:
    return f" in tensors, {row['reserved_gb']:.1f} GB reserved" if row.get("reserved_gb") else ""


def _is_random(quality: dict) -> bool:
    return quality.get("weights", "random").startswith("random")  # the rows build random weights (build_random)


def _weights_label(quality: dict) -> str:
    return "random weights" if _is_random(quality) else f"weights ({quality['weights']})"


def _random_caveat(quality: dict) -> str:
    """On random weights the error and agreement show how quantization error grows, not answer quality."""
    if not _is_random(quality):
        return ""
    return (f" (measured on random weights: the quantization error amplified through {quality.get('layers', 28)} "
            "random layers, not a measure of answer quality)")


def markdown(result: dict) -> str:
    e, p, f, c = result["engine"], result.get("plain_transformers", {}), result["floors"], result["ceilings"]
    rows = [
        ("vision (2 frames, 1456 patches)", e["vision_ms_p50"], f["vision_ms"], None),
        ("prefill of one chunk", e["prefill_ms_p50"], f["prefill_ms"], None),
        ("decode per token at ~8k context, alone", e.get("decode_alone_ms"), f["decode_ms"], None),
        ("decode per token at ~8k context, in the stream", e["decode_ms_per_token_at_8k"], f["decode_ms"], None),
        ("one 1-s chunk, 16 tokens, latency (stages, p50)", e["latency_ms_p50"], f["chunk_ms"], None),
        ("one 1-s chunk, 16 tokens (p50)", e["total_ms_p50"], f["chunk_ms"], p.get("total_ms_p50")),
        ("one 1-s chunk, 16 tokens (p95)", e["total_ms_p95"], f["chunk_ms"], p.get("total_ms_p95")),
    ]
    lines = [f"Device: {c['device']} ({c['matmul_tflops']:.0f} TFLOP/s bf16 matmul, {c['copy_tb_s']:.2f} TB/s copy), "
             f"torch {c['torch']}, transformers {c['transformers']}, {result['date']}; model {result['model']}.", "",
             "| stage | fast path (ms) | floor (ms) | x floor | plain transformers (ms) | speed-up |",
             "|---|---|---|---|---|---|"]
    for name, ms, floor, plain in rows:
        if ms is None:
            continue
        peer = f"{plain:.1f} | {plain / ms:.2f}x" if plain else "| "
        lines.append(f"| {name} | {ms:.1f} | {floor:.1f} | {ms / floor:.2f} | {peer} |")
    quant_rows, quant_notes = quant_markdown(result)
    lines += quant_rows
    lines += ["", f"Chunk rows are what each chunk cost the stream: {e['overlapped_chunks']} of {e['chunks'] - 1} "
              f"chunks had their preprocessing and vision ({e['hidden_ms_p50']:.1f} ms p50) overlapped with the "
              "previous chunk's decode on a second CUDA stream; the latency row adds every stage. Decode "
              "\"alone\" is the session's decode of a 16-token comment at 8192 tokens of context with nothing "
              "else on the GPU; \"in the stream\" is the chunk nearest 8k, the next chunk's vision alongside.",
              f"Chunk rows are the second {result['seconds']:.0f} s stream over the same runner; the first, "
              f"{_cold(e)}.",
              f"Real-time factor at 2 fps: {e['realtime_factor']:.1f} (p95/p50 {e['p95_over_p50']:.2f}); "
              f"peak GPU memory {result['peak_memory_gb']:.1f} GB{_reserved(result)} at up to {e['max_context']} tokens of context "
              f"(weights {f['weights_gb']:.1f} GB); same tokens as the reference on a small fp32 model: "
              f"{result['same_tokens']['same_tokens']}."]
    if "long" in result:
        lg = result["long"]
        lines.append(f"Long run: {lg['seconds']} s of video, {lg['compactions']} compactions, chunk time p50 "
                     f"{lg['total_ms_p50']:.0f} ms / p99 {lg['total_ms_p99']:.0f} ms / max {lg['total_ms_max']:.0f} ms, "
                     f"peak memory per minute {lg['peak_gb_per_minute']} GB.")
    lines += quant_notes
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--plain-seconds", type=float, default=None,
                    help="video for the transformers loop (default: same; 0 skips it)")
    ap.add_argument("--long", type=float, default=0.0, help="also run this many seconds across compactions")
    ap.add_argument("--model", default=None, help="real checkpoint folder instead of random 7B weights")
    ap.add_argument("--budget", type=int, default=16384)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--quantize", nargs="*", default=[], choices=("int8", "int4"),
                    help="add rows for these weight precisions (same random weights)")
    ap.add_argument("--quality-budget", type=int, default=32000,
                    help="KV budget of the logit comparison: large enough that the stream never compacts")
    ap.add_argument("--smoke", action="store_true", help="the quantized rows at a toy shape on the CPU")
    args = ap.parse_args()
    if args.smoke:
        return smoke(args)
    args.shape, args.dtype, args.device, args.pixels = "7b", torch.bfloat16, "cuda", {}

    result = {"date": dt.date.today().isoformat(), "ceilings": device_ceilings(), "seconds": args.seconds}
    print("ceilings", result["ceilings"], flush=True)
    result["flash_decode"] = flash_decode_check()
    print("flash decode", result["flash_decode"], flush=True)
    result["same_tokens"] = same_tokens_check()
    print("same tokens", result["same_tokens"], flush=True)
    loaded = load_model(args.model, device="cuda") if args.model else build_random("7b", torch.bfloat16, "cuda")
    result["model"] = loaded.name
    cfg = SessionConfig(ignore_eos=True, max_new_tokens=16, kv_budget=args.budget)
    stats, stalls, memory, session, cold = run_cold_then_warm(loaded, args.seconds, cfg)
    result["runner"] = session.runner.name
    result["engine"] = dict(summarize(stats, stalls), cold=cold)
    result["peak_memory_gb"], result["reserved_gb"] = max(m[2] for m in memory), _reserved_gb()
    result["memory_trace"] = memory
    result["per_chunk"] = [dict(s.__dict__, compaction_ms=stall) for s, stall in zip(stats, stalls)]
    result["floors"] = floors(loaded.model, result["ceilings"], 8192, 384 + 20, 1456)
    result["engine"]["decode_alone_ms"] = decode_alone_ms(session)
    if (replay := decode_replay_ms(session.runner)) is not None:
        result["engine"]["decode_graph_replay_ms"], result["engine"]["decode_graph_width"] = replay
    print("engine", result["engine"], flush=True)
    write(result, args.out)  # each stage's results land as soon as they exist
    if args.plain_seconds != 0:
        plain = run_plain_transformers(loaded, args.plain_seconds or args.seconds, cfg)
        totals = [r["total_ms"] for r in plain[1:]]
        result["plain_transformers"] = {"chunks": len(plain), "total_ms_p50": pct(totals, 50),
                                        "total_ms_p95": pct(totals, 95), "per_chunk": plain}
        result["speedup_p50"] = result["plain_transformers"]["total_ms_p50"] / result["engine"]["total_ms_p50"]
        print("plain", {k: v for k, v in result["plain_transformers"].items() if k != "per_chunk"}, flush=True)
    del session  # free its cache and graphs before the long run measures memory
    gc.collect()
    torch.cuda.empty_cache()
    if args.long:
        result["long"] = long_run(loaded, args.long, args.budget)
    del loaded  # the quantized rows measure their own peak memory
    _free()
    for p in args.quantize:
        result.setdefault("quantized", {})[p] = quant_row(p, args, result["ceilings"], result["floors"])
        result["quantized"][p]["same_tokens"] = same_tokens_check(p)
        write(result, args.out)
    write(result, args.out)


def smoke(args) -> None:
    """Every quantized-row code path on a toy model on the CPU, with nominal device ceilings."""
    args.shape, args.dtype, args.device = "small", torch.float32, "cpu"
    args.seconds, args.budget, args.quality_budget = 4.0, 4096, 4096
    args.pixels = {"max_pixels": 112 * 84, "min_pixels": 28 * 28}  # toy frames: the CPU only checks the code
    ceilings = {"copy_tb_s": 0.01, "matmul_tflops": 0.1, "device": "cpu (smoke)", "torch": torch.__version__,
                "transformers": __import__("transformers").__version__}
    small = build_random("small", torch.float32, "cpu")
    result = {"date": dt.date.today().isoformat(), "ceilings": ceilings, "seconds": args.seconds,
              "floors": floors(small.model, ceilings, 8192, 404, 1456)}
    result["quantized"] = {p: quant_row(p, args, ceilings, result["floors"]) for p in args.quantize or ("int8", "int4")}
    rows, notes = quant_markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine_smoke.json").write_text(json.dumps(result, indent=1, default=float))
    (args.out / "engine_smoke.md").write_text("\n".join(rows + notes) + "\n")


def long_run(loaded: LoadedModel, seconds: float, budget: int) -> dict:
    cfg = SessionConfig(ignore_eos=True, max_new_tokens=16, kv_budget=budget)
    stats, stalls, memory, _ = run_engine(loaded, seconds, cfg)
    total = chunk_totals(stats, stalls)[1:]
    per_minute: dict[int, float] = {}
    for end, _, gb in memory:
        minute = int((end - 1e-6) // 60)
        per_minute[minute] = round(max(gb, per_minute.get(minute, 0.0)), 2)
    return {"seconds": seconds, "chunks": len(stats), "compactions": stats[-1].compactions,
            "total_ms_p50": pct(total, 50), "total_ms_p99": pct(total, 99), "total_ms_max": max(total),
            "max_context": max(s.cache_tokens for s in stats), "peak_gb_per_minute": list(per_minute.values()),
            "compaction_ms_max": max(stalls), "compaction_ms_p50": pct([x for x in stalls if x], 50),
            "per_chunk_total_ms": total}


@contextlib.contextmanager
def applied(setting: str | None):
    """The environment with `setting` (NAME=VALUE) in it, restored after; None: as it is."""
    if setting is None:
        yield
        return
    name, _, value = setting.partition("=")
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def write_outputs(out: Path, files: dict[str, str], remove: tuple[str, ...] = ()) -> None:
    """Write each named file to --out and, when set, to $OUT (the folder a device run brings back);
    `remove`: files to delete there first (a stage's partial results)."""
    for d in [out] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else []):
        d.mkdir(parents=True, exist_ok=True)
        for name in remove:
            (d / name).unlink(missing_ok=True)
        for name, text in files.items():
            (d / name).write_text(text)


def write(result: dict, out: Path) -> None:
    stamp = f"{result['date']}_{result['ceilings']['device'].replace(' ', '-')}"
    write_outputs(out, {f"engine_{stamp}.json": json.dumps(result, indent=1, default=float),
                        f"engine_{stamp}.md": markdown(result)})
    print(markdown(result))


if __name__ == "__main__":
    main()
