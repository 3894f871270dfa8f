"""Where a decode step's time goes on the GPU: top kernels of one eager step, and the replay
time of the captured step, at ~8k tokens of context. (torch.compile of the step was tried on
2026-11-21, H100: 35.5 ms per replay against 8.5 ms eager-captured, so it is not used.)

    python benchmarks/profile_decode.py [--context-seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine as bench  # noqa: E402

from engine.decoding import SelectRule  # noqa: E402
from engine.session import SessionConfig  # noqa: E402


def replay_ms(session, token: int) -> float:
    runner = session.runner
    runner._pick_graphs.clear()
    rule = SelectRule(banned=(1, 2))
    pick = lambda lg, fed, k: session.sampler.next_token(lg, rule, k, fed)  # noqa: E731
    session.sampler.next_token(torch.zeros(runner.model.lm_head.weight.shape[0], device="cuda"), rule, 0)
    length = runner.cache.length
    t0 = time.perf_counter()
    runner.decode_and_pick(token, session.state.next_pos, 1, pick, rule)
    build = time.perf_counter() - t0
    runner.cache.length = length
    graph = next(iter(runner._pick_graphs.values()))
    ms = bench.timed(graph.graph.replay, reps=50)
    print(f"graphed decode step at {length} tokens: replay {ms:.2f} ms (capture {build:.1f} s)", flush=True)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--context-seconds", type=float, default=20.0)
    args = ap.parse_args()
    loaded = bench.build_random("7b", torch.bfloat16, "cuda")
    _, _, session = bench.run_engine(loaded, args.context_seconds, SessionConfig(ignore_eos=True))
    print("context tokens", session.runner.length, flush=True)
    runner = session.runner
    state = torch.tensor([5, runner.cache.length], device="cuda")
    pos = torch.tensor([session.state.next_pos], device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            runner._decode_eager(state, pos, runner._width(runner.cache.length))
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            runner._decode_eager(state, pos, runner._width(runner.cache.length))
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18), flush=True)
    replay_ms(session, 5)


if __name__ == "__main__":
    main()
