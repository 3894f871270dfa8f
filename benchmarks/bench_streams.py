"""Many live streams on one GPU: how many real-time streams the engine core serves.

    python benchmarks/bench_streams.py [--streams 1,2,4,8,16,24,32,48,64] [--precisions bf16,int4]
                                       [--seconds 20] [--agreement-seconds 300] [--out DIR]
    python benchmarks/bench_streams.py --streams 28,32 --compare LIVECC_NO_FIRST_PICK=1 --repeat 2
    python benchmarks/bench_streams.py --smoke     # CPU: the tiny model, 1 and 2 streams, seconds

No download: the LiveCC-7B architecture with random weights (bench_engine.build_random). N
synthetic 1080p 30 fps sources (their frames resized at capture to the model's size, as file
sources and the server's connections do; --full-frames: 1080p into the engine) are paced in real
time, each started at its own phase (stream k at k/N s), as live sessions of one EngineCore (a
live session skips ahead when behind, and says so in its Stats). Streams that start together
compact together; `--join-over S` starts stream k at k*S/N s and counts only what is captured once
all have run WARM_S: with S about a compaction's period (10 s at an 8k budget) and long rows, the
steady state of streams whose compactions come at different moments. Caption latency runs from the
capture of a chunk's last frame to its Commentary event; every chunk decodes its 16 tokens (EOS
ignored), the worst case. The first WARM_S seconds of each stream are not counted (the allocator
grows), and a short run of two streams before the rows is not kept (Triton compiles, graphs are
captured). Rows go up in N and stop at the first N whose streams fall behind (a skipped chunk, or
caption p95 over 0.5 s). Rows shorter than about 20 s end before a session fills the 8k budget;
longer ones include its compactions (counted in each row). Also measured in the same run: the
single-stream chunk p50 of today's path (StreamingSession.run, CUDA graphs) against the core with
one session, and the token agreement of one stream run alone and in a batch of 8, over
`--agreement-seconds` of video. Near the limit two runs of the same code differ more than most
changes do (a 32-stream row gave caption p50 0.65 s and then 0.34 s in one process on an H100):
`--compare NAME=VALUE` runs each row also with that setting, the two in turn in one process, and
`--repeat R` runs each R times; the table then also says how many of each N's rows were real-time
(the maximum counts an N only when every one of its rows was).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_engine import (SyntheticSource, applied, build_random, device_label, pct, quantized_model,  # noqa: E402
                          write_outputs)
from bench_live import PERIOD, PacedSource  # noqa: E402
from engine.capture.frames import RingBuffer  # noqa: E402
from engine.core.engine import EngineCore  # noqa: E402
from engine.core.scheduler import STEP_TOKENS  # noqa: E402
from engine.defaults import VIDEO_WINDOW_S  # noqa: E402
from engine.model.preprocess import frame_resizer  # noqa: E402
from engine.session.events import Commentary, Stats  # noqa: E402
from engine.session.session import SessionConfig, StreamingSession  # noqa: E402
from videos import synthetic_frame  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WARM_S = 5.0
CAPTION_P95_S = 0.5
KV_BUDGET = 8192  # per session: the context the arithmetic assumes (8k)
VIDEO_WINDOW = VIDEO_WINDOW_S  # seconds of video a compaction keeps (--video-window)


def config(smoke: bool, live: bool = True) -> SessionConfig:
    small = dict(max_pixels=160 * 112, min_pixels=28 * 28, memory_tokens=64) if smoke else {}
    return SessionConfig(live=live, ignore_eos=True, max_new_tokens=16, answer_max_new_tokens=64, kv_budget=KV_BUDGET,
                         video_window_s=VIDEO_WINDOW, memory=not live, **small)


class Listener:
    """One stream's comments (chunk end, when the event came) and stats."""

    def __init__(self, source: PacedSource):
        self.source, self.comments, self.stats = source, [], []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def on_event(self, event) -> None:
        if isinstance(event, Commentary):
            self.comments.append((event.end, time.monotonic()))
        elif isinstance(event, Stats):
            self.stats.append(event)

    def on_end(self, error) -> None:
        self.error = error
        self.done.set()

    def timed(self, after: float = 0.0) -> list[tuple[float, float]]:
        """(capture of the chunk's last frame, the comment's arrival) of each comment past WARM_S of
        this stream and captured at monotonic time `after` or later."""
        timed = [(self.source.capture_time(end - PERIOD), at) for end, at in self.comments if end > WARM_S]
        return [(captured, at) for captured, at in timed if captured >= after]

    def latencies(self, after: float = 0.0) -> list[float]:
        return [at - captured for captured, at in self.timed(after)]


def images(smoke: bool, model_size: bool = True) -> list:
    """The sources' 16 distinct 1080p frames; with `model_size`, resized as every many-stream source
    resizes at capture (file sources, the server's connections: engine/model/preprocess.py frame_resizer),
    so the engine thread gets what it gets in use. Without it, full 1080p frames reach the engine."""
    w, h = (160, 112) if smoke else (1920, 1080)
    frames = [synthetic_frame(t * 0.37, w, h) for t in range(16)]
    cfg = config(smoke)
    resize = frame_resizer(h, w, cfg.max_pixels, cfg.min_pixels) if model_size else None
    return [resize(f) for f in frames] if resize else frames


def start_offset(k: int, n: int, join_over: float) -> float:
    """When stream k of N starts, in seconds: spread over `join_over`, each at its own phase of the
    second (k/N), so chunks do not arrive together: k * join_over / N alone puts 20 streams over 20 s
    all in one phase."""
    if join_over <= 1.0:
        return k * join_over / n
    return math.floor(k * join_over / n) + k / n


def run_row(loaded, n: int, seconds: float, smoke: bool, pictures: list, step_tokens: int = STEP_TOKENS,
            listeners: list | None = None, join_over: float = 1.0) -> dict:
    """N paced live streams through one core; the row of the results table. `listeners`, given, gets
    each stream's Listener (its comments' times). Stream k starts at k * join_over / N s; when they
    join over more than 1 s, only comments captured once the last stream has run WARM_S count (the
    steady state of N streams whose compactions come at different moments)."""
    _free()
    started = time.monotonic()
    core = EngineCore(loaded, sessions=n, kv_budget=KV_BUDGET, step_tokens=step_tokens)
    start_s = time.monotonic() - started  # (its warm start's graph captures among it)
    core.start()
    listeners = [] if listeners is None else listeners
    t0 = time.monotonic()
    for k in range(n):
        time.sleep(max(0.0, t0 + start_offset(k, n, join_over) - time.monotonic()))
        buffer = RingBuffer(64)
        source = PacedSource(seconds, pictures[k % len(pictures):] + pictures[:k % len(pictures)])
        listener = Listener(source)
        core.open(buffer, config(smoke), listener.on_event, listener.on_end)
        source.start(buffer)
        listeners.append(listener)
    for listener in listeners:
        listener.done.wait(timeout=seconds + join_over + 30)
    elapsed = time.monotonic() - t0
    core.close()
    errors = [repr(x.error) for x in listeners if x.error is not None]
    after = listeners[-1].source.start_time + WARM_S if join_over > 1.0 else 0.0
    latency = [v for x in listeners for v in x.latencies(after)]
    chunk_ms = [s.total_ms for x in listeners for s in x.stats if s.end > WARM_S]
    skipped = sum(x.stats[-1].chunks_skipped for x in listeners if x.stats)
    row = {"streams": n, "precision": loaded.precision, "caption_latency_s": spread(latency),
           "skipped_chunks": skipped, "chunk_ms": {k: v for k, v in spread(chunk_ms).items() if k != "max"},
           "gpu_busy_fraction": round(core.load.total_s / elapsed, 3), "peak_memory_gb": _peak_gb(),
           "slab_gb": round(core.pool.slab_bytes / 2**30, 3),
           "max_context": max((s.cache_tokens for x in listeners for s in x.stats), default=0),
           "compactions": sum(x.stats[-1].compactions for x in listeners if x.stats), "errors": errors,
           "core_start_s": round(start_s, 2), "join_over_s": join_over}
    row["realtime"] = not errors and skipped == 0 and bool(latency) and row["caption_latency_s"]["p95"] <= CAPTION_P95_S
    print(json.dumps(row), flush=True)
    del core
    return row


def today_p50(loaded, seconds: float, smoke: bool, pictures: list) -> float:
    """Chunk p50 of the single-stream path (StreamingSession.run on its fast runner), one paced live stream."""
    _free()
    session = StreamingSession(loaded, config(smoke))
    buffer = RingBuffer(64)
    PacedSource(seconds, pictures).start(buffer)
    stats = [e for e in session.run(buffer) if isinstance(e, Stats) and e.end > WARM_S]
    return round(pct([s.total_ms for s in stats], 50), 1)


def agreement(loaded, seconds: float, smoke: bool, batch: int = 8) -> dict:
    """Comments of stream 0 alone and in a batch of `batch` streams (files: no skipping), compared."""
    def run(n: int) -> list[str]:
        _free()
        core = EngineCore(loaded, sessions=n, kv_budget=KV_BUDGET)
        said: list[list[str]] = [[] for _ in range(n)]
        for k in range(n):
            buffer = RingBuffer(64)
            size = (112, 160) if smoke else (1080, 1920)
            source = SyntheticSource(seconds, size=size)
            source.images = source.images[k:] + source.images[:k]
            core.open(buffer, config(smoke, live=False),
                      lambda e, k=k: said[k].append(e.text) if isinstance(e, Commentary) else None)
            source.start(buffer)
        core.run_until_done()
        return said[0]

    alone, batched = run(1), run(batch)
    with applied("LIVECC_NO_LOOKAHEAD=1"):
        unahead = run(1)
    same = sum(a == b for a, b in zip(alone, batched))
    first = next((i for i, (a, b) in enumerate(zip(alone, batched)) if a != b), None)
    return {"seconds": seconds, "batch": batch, "comments": len(alone), "identical_comments": same,
            "fraction": round(same / max(1, len(alone)), 3), "first_difference_chunk": first,
            "alone_without_lookahead_identical": unahead == alone}


def spread(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(pct(values, 50), 3), "p95": round(pct(values, 95), 3), "max": round(max(values), 3)}


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0


def build(precision: str, smoke: bool):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = "small" if smoke else "7b"
    if precision == "bf16":
        loaded = build_random(shape, torch.bfloat16 if device == "cuda" else torch.float32, device)
        loaded.precision = "bf16"
        return loaded
    return quantized_model(precision, shape, torch.bfloat16, device)


def main() -> None:
    global KV_BUDGET, VIDEO_WINDOW
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="1,2,4,8,16,24,32,48,64")
    ap.add_argument("--precisions", default="bf16,int4")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--agreement-seconds", type=float, default=None, help="default 300 (smoke: 6)")
    ap.add_argument("--kv-budget", type=int, default=KV_BUDGET, help="tokens of KV cache a session")
    ap.add_argument("--video-window", type=float, default=VIDEO_WINDOW_S,
                    help="seconds of video a compaction keeps (the session's video_window_s)")
    ap.add_argument("--step-tokens", type=int, default=STEP_TOKENS, help="tokens an engine step computes at most")
    ap.add_argument("--all-rows", action="store_true", help="measure every N, also past the first that falls behind")
    ap.add_argument("--compare", metavar="NAME=VALUE", help="each row also with this LIVECC_ setting, the two in "
                    "turn in one process (near the limit runs differ more than most changes do: compare within one)")
    ap.add_argument("--repeat", type=int, default=1, help="rows of each N (and setting) in turn")
    ap.add_argument("--join-over", type=float, default=1.0, help="seconds over which a row's streams start, each at "
                    "its own phase of the second (over 1: counted once all have run 5 s, so long rows see "
                    "compactions at different moments)")
    ap.add_argument("--full-frames", action="store_true", help="1080p frames into the engine (no capture-side resize)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.smoke:
        args.streams, args.precisions, args.seconds = "1,2", "bf16", 8.0
    if args.agreement_seconds is None:
        args.agreement_seconds = 6.0 if args.smoke else 300.0
    KV_BUDGET = args.kv_budget
    if not 0 < args.video_window < math.inf:
        ap.error("--video-window takes a finite number of seconds over 0")
    VIDEO_WINDOW = args.video_window
    if args.repeat < 1:
        ap.error("--repeat takes a count of 1 or more")
    if args.join_over <= 0 or (args.join_over > 1.0 and args.join_over >= args.seconds - WARM_S):
        ap.error(f"--join-over takes seconds over 0 and, past 1, under the row's --seconds less {WARM_S:.0f}")
    settings = [None] + ([checked_setting(ap, args.compare)] if args.compare else [])
    pictures = images(args.smoke, model_size=not args.full_frames)
    result = {"date": dt.date.today().isoformat(), "device": device_label("cuda" if torch.cuda.is_available() else "cpu"),
              "frames": "1080p" if args.full_frames else "resized at capture to the model's size",
              "seconds_per_row": args.seconds, "kv_budget": KV_BUDGET,
              "video_window_s": VIDEO_WINDOW, "rows": [], "max_realtime_streams": {}}
    for precision in args.precisions.split(","):
        loaded = build(precision, args.smoke)
        if precision == "bf16":
            result["single_stream_chunk_p50_ms"] = {"today": today_p50(loaded, args.seconds, args.smoke, pictures)}
        for setting in settings:
            with applied(setting):
                run_row(loaded, 2, 2 * WARM_S, args.smoke, pictures, args.step_tokens)  # not kept: first-use compiles
        best = {setting: 0 for setting in settings}  # the largest N with every N up to it real-time
        behind = dict.fromkeys(settings, False)
        for n in map(int, args.streams.split(",")):
            for _ in range(args.repeat):
                for setting in settings:
                    with applied(setting):
                        row = run_row(loaded, n, args.seconds, args.smoke, pictures, args.step_tokens,
                                      join_over=args.join_over)
                    row["step_tokens"], row["setting"] = args.step_tokens, setting or "default"
                    result["rows"].append(row)
                    write(result, args.out, quiet=True)  # what a crash later in the run must not lose
                    if precision == "bf16" and n == 1 and setting is None:
                        result["single_stream_chunk_p50_ms"].setdefault("core", row["chunk_ms"]["p50"])
                    behind[setting] = behind[setting] or not row["realtime"]
            for setting in settings:
                best[setting] = best[setting] if behind[setting] else n
            if all(behind.values()) and not args.all_rows:
                break
        for setting in settings:
            result["max_realtime_streams"][precision + (f" {setting}" if setting else "")] = best[setting]
        if precision == "bf16" and args.agreement_seconds > 0:
            result["agreement"] = agreement(loaded, args.agreement_seconds, args.smoke)
            write(result, args.out, quiet=True)
        del loaded
        _free()
    write(result, args.out)


def checked_setting(ap: argparse.ArgumentParser, text: str) -> str:
    """`--compare NAME=VALUE`, NAME a registered setting (engine/flags.py) and VALUE one it takes."""
    from engine import flags

    name, sep, _ = text.partition("=")
    if not sep or name not in flags.REGISTRY:
        ap.error(f"--compare takes NAME=VALUE with NAME one of docs/configuration.md's settings, not {text!r}")
    with applied(text):
        try:
            flags.get(name)  # a bad value stops here, not after the first rows
        except flags.FlagError as exc:
            ap.error(f"--compare {text}: {exc}")
    return text


def markdown(result: dict) -> str:
    lines = [f"# Streams on one GPU: {result['device']}, {result['date']}", "",
             f"Random LiveCC-7B weights, paced 1080p live streams (frames {result.get('frames', '1080p')}), "
             f"16 tokens a chunk, KV budget {result['kv_budget']} "
             f"a session, {result.get('video_window_s', VIDEO_WINDOW_S):g} s of video kept by a compaction, "
             f"{result['seconds_per_row']:.0f} s a row (first {WARM_S:.0f} s not counted).", "",
             "| streams | precision | setting | caption p50 / p95 / max (s) | skipped | chunk p50 / p95 (ms) | GPU busy "
             "| peak GB | compactions |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c, k = r["caption_latency_s"], r["chunk_ms"]
        lines.append(f"| {r['streams']} | {r['precision']} | {r.get('setting', 'default')} "
                     f"| {c['p50']} / {c['p95']} / {c['max']} | {r['skipped_chunks']} "
                     f"| {k['p50']} / {k['p95']} | {r['gpu_busy_fraction']:.0%} | {r['peak_memory_gb']} "
                     f"| {r.get('compactions', '-')} |")
    lines += ["", f"Most real-time streams (no skipped chunk, caption p95 <= {CAPTION_P95_S} s): "
              + ", ".join(f"{p} {n}" for p, n in result["max_realtime_streams"].items()) + "."]
    if result["rows"] and not any(r.get("compactions") for r in result["rows"]):
        lines.append("No session compacted in these rows: the counts hold before compactions, which re-prefill "
                     "about half the KV budget each (longer --seconds include them).")
    tally = realtime_tally(result["rows"])
    if any(total > 1 for _, total in tally.values()):  # (repeated rows: near the limit rows differ)
        lines.append("Real-time rows of each N: " + ", ".join(
            f"{label} {n}: {ok} of {total}" for (label, n), (ok, total) in tally.items()) + ".")
    if "single_stream_chunk_p50_ms" in result:
        s = result["single_stream_chunk_p50_ms"]
        core = f"the core {s['core']} ms" if s.get("core") is not None else "the core's row not run"
        lines.append(f"Single stream chunk p50: today's path {s.get('today')} ms, {core}.")
    if "agreement" in result:
        a = result["agreement"]
        lines.append(f"Token agreement, one stream alone vs in a batch of {a['batch']} over {a['seconds']:.0f} s: "
                     f"{a['identical_comments']} of {a['comments']} comments identical (first difference at chunk "
                     f"{a['first_difference_chunk']}); random weights amplify rounding differences.")
        if "alone_without_lookahead_identical" in a:
            lines.append("One stream alone with and without the decode lookahead (LIVECC_NO_LOOKAHEAD=1): comments "
                         + ("identical." if a["alone_without_lookahead_identical"] else "DIFFER."))
    return "\n".join(lines) + "\n"


def realtime_tally(rows: list[dict]) -> dict:
    """(precision and setting, N) -> (real-time rows, rows), in the rows' order."""
    tally: dict = {}
    for r in rows:
        setting = r.get("setting", "default")
        key = (r["precision"] + ("" if setting == "default" else f" {setting}"), r["streams"])
        ok, total = tally.get(key, (0, 0))
        tally[key] = (ok + bool(r["realtime"]), total + 1)
    return tally


def write(result: dict, out: Path, quiet: bool = False) -> None:
    stamp = f"{result['date']}_{result['device'].replace(' ', '-')}"
    write_outputs(out, {f"streams_{stamp}.json": json.dumps(result, indent=1), f"streams_{stamp}.md": markdown(result)})
    if not quiet:
        print(markdown(result))


if __name__ == "__main__":
    main()
