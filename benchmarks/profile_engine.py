"""Where a chunk's GPU time goes: top kernels of one decode step, one chunk prefill and one vision
encode at ~8k tokens of context, and the replay time of the captured decode step.

    python benchmarks/profile_engine.py [--context-seconds 20]

(torch.compile of the decode step was tried on 2026-11-21 on an H100: 35.5 ms per replay against
8.5 ms for the eager-captured step at the time, so the engine does not compile.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine as bench  # noqa: E402

from engine.model.preprocess import preprocess_frames  # noqa: E402
from engine.session.session import SessionConfig  # noqa: E402
from videos import synthetic_frame  # noqa: E402


def profile(label: str, fn, rows: int = 12) -> None:
    with torch.inference_mode():
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
    events = prof.key_averages()
    total = sum(e.self_device_time_total for e in events) / 1e3
    print(f"\n== {label}: {total:.2f} ms of kernels, {sum(e.count for e in events)} launches", flush=True)
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:rows]:
        print(f"{e.self_device_time_total / 1e3:8.3f} ms {e.count:5d}x  {e.key[:90]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--context-seconds", type=float, default=20.0)
    args = ap.parse_args()
    loaded = bench.build_random("7b", torch.bfloat16, "cuda")
    _, _, _, session = bench.run_engine(loaded, args.context_seconds, SessionConfig(ignore_eos=True))
    runner = session.runner
    print("context tokens", runner.length, flush=True)
    length = runner.length
    width = runner._width(length)
    state = torch.tensor([5, length], device="cuda")
    pos = torch.tensor([session.state.next_pos], device="cuda")
    profile(f"decode step (width {width})", lambda: runner._decode_eager(state, pos, width))
    if (replay := bench.decode_replay_ms(runner)) is not None:
        print(f"graphed decode step replay (width {replay[1]}): {replay[0]:.2f} ms", flush=True)

    frames = [synthetic_frame(t, 1920, 1080) for t in (0.0, 0.5)]
    video = preprocess_frames(frames, "cuda")
    cos, sin = runner.vision.rope_for(video)
    pixels = video.pixel_values_videos
    profile("vision (2 frames, eager)", lambda: runner.vision.run_eager(pixels, cos, sin, 1))
    embeds = runner.encode_video(video)
    turn = session.prompt.chunk_turn(100.0, 101.0, video.num_tokens, None, first=False)
    ids = torch.tensor(turn, device="cuda")
    positions = torch.arange(len(turn), device="cuda").expand(3, -1) + session.state.next_pos

    def prefill():
        runner.cache.length = length
        runner.prefill(ids, positions, embeds)

    profile(f"prefill ({len(turn)} tokens at {length})", prefill)
    print(f"prefill wall: {bench.timed(prefill, reps=10):.2f} ms", flush=True)


if __name__ == "__main__":
    main()
