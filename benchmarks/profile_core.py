"""Where the engine core's time goes with N paced live streams: the engine thread's wall time split
into the sessions' own Python (advance: preprocessing, token choice, events) and the batched
decode, prefill and vision launches (each timed from a synchronize to a synchronize), with
counts per step; then the top kernels and host ops of a short window under torch.profiler.

    python benchmarks/profile_core.py [--streams 24,32] [--seconds 12]
    python benchmarks/profile_core.py --streams 4,32 --syncs     # where the engine thread syncs the GPU
    python benchmarks/profile_core.py --streams 32 --sampled     # its stacks, no profiler or phase syncs
    python benchmarks/profile_core.py --streams 32 --timeline    # each step, and the steps behind slow captions

`--syncs` runs each row under torch.cuda.set_sync_debug_mode("warn") and counts the call sites
(our outermost frames) of every synchronizing CUDA operation; a site that repeats every chunk or
step stalls the lookahead (the host waits for all queued work, then the GPU waits for the host).
`--sampled` only samples the engine thread's stacks in the middle of a plain row: where its time goes
without the phase clock's synchronizes and the profiler's overhead (its share in `threading.wait`
is the time it had nothing to do). `--timeline` records every engine step of a plain row (its host
and GPU time, decode rows, prefill pieces, how much of its pass was graphed, vision chunks, graph
captures) into timeline_N.json, and compares the steps that ran while a caption was late (over
0.5 s) with the others: what the tail's steps have that the median's lack; and, from each session's
requests, where each comment's latency went (waiting for its session, vision, prefill, decode).

Random LiveCC-7B weights (bench_engine.build_random), the sources of bench_streams.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import bench_streams as streams  # noqa: E402

from bench_engine import pct  # noqa: E402
from bench_live import PacedSource  # noqa: E402
from engine.capture.frames import RingBuffer  # noqa: E402
from engine.core.batched import BatchedRunner, padded_size  # noqa: E402
from engine.core.engine import EngineCore  # noqa: E402
from engine.runtime.graphs import CUDAGraphed  # noqa: E402
from engine.session.steps import IDLE  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = not torch.cuda.is_available()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class PhaseClock:
    """Wall seconds and calls of each timed phase on the engine thread (synchronized at both ends)."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self.rows = collections.Counter()

    def wrap(self, owner, name: str, label: str, rows=None) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                sync()
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1
                if rows is not None:
                    self.rows[label] += rows(*args)  # called with the wrapped call's positional arguments

        setattr(owner, name, timed)

    def report(self, wall: float) -> dict:
        return {k: {"s_per_s": round(v / wall, 3), "calls_per_s": round(self.calls[k] / wall, 1),
                    "ms_per_call": round(1e3 * v / max(1, self.calls[k]), 2),
                    "rows_per_call": round(self.rows[k] / max(1, self.calls[k]), 1)}
                for k, v in self.seconds.items()}


def run(loaded, n: int, seconds: float, pictures: list, profile_s: float, out: Path) -> dict:
    streams._free()
    core = EngineCore(loaded, sessions=n, kv_budget=streams.KV_BUDGET)
    clock = PhaseClock()
    clock.wrap(core, "_advance", "advance (sessions' Python)")
    clock.wrap(core.runner, "decode", "decode", rows=lambda rows, *_: len(rows))
    clock.wrap(core.runner, "prefill", "prefill", rows=lambda pieces: len(pieces))
    clock.wrap(core.runner, "encode", "vision", rows=lambda videos: len(videos))
    clock.wrap(core, "step", "step")
    core.start()
    listeners = []
    t0 = time.monotonic()
    for k in range(n):
        time.sleep(max(0.0, t0 + k / n - time.monotonic()))
        buffer = RingBuffer(64)
        source = PacedSource(seconds, pictures[k % len(pictures):] + pictures[:k % len(pictures)])
        listener = streams.Listener(source)
        core.open(buffer, streams.config(SMOKE), listener.on_event, listener.on_end)
        source.start(buffer)
        listeners.append(listener)
    time.sleep(streams.WARM_S)
    clock.seconds.clear(), clock.calls.clear(), clock.rows.clear()
    w0 = time.monotonic()
    time.sleep(max(0.0, seconds - streams.WARM_S - profile_s - 2))
    wall = time.monotonic() - w0
    phases = clock.report(wall)
    tables = profile_window(profile_s, n, out) if profile_s > 0 else {}
    for listener in listeners:
        listener.done.wait(timeout=seconds + 30)
    core.close()
    latency = [v for x in listeners for v in x.latencies()]
    row = {"streams": n, "phases": phases, "caption_latency_s": streams.spread(latency),
           "skipped": sum(x.stats[-1].chunks_skipped for x in listeners if x.stats),
           "errors": sorted({repr(x.error) for x in listeners if x.error is not None}), **tables}
    print(json.dumps(row, indent=1), flush=True)
    return row


def profile_window(seconds: float, n: int, out: Path) -> dict:
    """Over `seconds` of the running core: the top kernels (torch.profiler sees every thread's
    kernels) and where the engine thread's host time goes (its Python stack, sampled every ms:
    torch.profiler records host ops of the thread that started it only)."""
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if not SMOKE else [])
    engine = engine_thread().ident
    with torch.profiler.profile(activities=acts) as prof:
        samples = sample_stacks(engine, seconds)
    events = prof.key_averages()
    by_gpu = sorted(events, key=lambda e: -e.self_device_time_total)[:30]
    gpu = [f"{e.self_device_time_total / 1e3 / seconds:8.1f} ms/s {e.count / seconds:8.1f}/s  {e.key[:100]}" for e in by_gpu]
    total_gpu = sum(e.self_device_time_total for e in events) / 1e3 / seconds
    total = sum(samples["leaf"].values())
    lines = [f"N={n}: kernels {total_gpu:.1f} ms per second", "-- kernels by GPU time", *gpu]
    for kind in ("leaf", "ours", "path"):
        lines.append(f"-- engine thread, share of {total} samples by {kind}")
        lines += [f"{c / total:6.1%}  {key}" for key, c in samples[kind].most_common(40)]
    text = "\n".join(lines)
    (out / f"profile_core_{n}.txt").write_text(text + "\n")
    print(text, flush=True)
    return {"kernel_ms_per_s": round(total_gpu, 1)}


def engine_thread() -> threading.Thread | None:
    """The running core's engine thread (EngineCore.start), if one has started."""
    return next((t for t in threading.enumerate() if t.name == "livecc-engine-core"), None)


def sample_stacks(thread_id: int, seconds: float, every_s: float = 0.001) -> dict:
    """Counts of the thread's innermost frame, innermost frame in this repository, and its repository
    call path (outermost 6 of our frames), sampled every `every_s`."""
    counts = {"leaf": collections.Counter(), "ours": collections.Counter(), "path": collections.Counter()}
    root = str(Path(__file__).resolve().parent.parent)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = sys._current_frames().get(thread_id)
        stack = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        if stack:
            name = lambda f: f"{Path(f.f_code.co_filename).name}:{f.f_code.co_name}"  # noqa: E731
            counts["leaf"][name(stack[0])] += 1
            ours = [f for f in stack if f.f_code.co_filename.startswith(root)]
            counts["ours"][name(ours[0]) if ours else "-"] += 1
            counts["path"][" < ".join(name(f) for f in ours[:6])] += 1
        time.sleep(every_s)
    return counts


def sync_sites(loaded, n: int, seconds: float, pictures: list) -> dict:
    """A plain row of N streams under sync debug mode: each synchronizing CUDA call, by call site."""
    sites = collections.Counter()
    root = str(Path(__file__).resolve().parent.parent)

    def record(message, category, filename, lineno, file=None, line=None):
        ours = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(root) and "/.venv/" not in f.filename]
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(ours[-5:]))
        sites[f"{where} | {str(message)[:60]}"] += 1

    with warnings.catch_warnings():  # (restores showwarning too)
        warnings.simplefilter("always")
        warnings.showwarning = record
        if DEVICE == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            row = streams.run_row(loaded, n, seconds, SMOKE, pictures)
        finally:
            if DEVICE == "cuda":
                torch.cuda.set_sync_debug_mode(0)
    result = {"streams": n, "caption_latency_s": row["caption_latency_s"], "syncs": sites.most_common(30)}
    print(json.dumps(result, indent=1), flush=True)
    return result


def sampled(loaded, n: int, seconds: float, pictures: list, sample_s: float = 5.0) -> dict:
    """A plain row of N streams with the engine thread's stacks sampled for `sample_s` after WARM_S."""
    counts: dict = {}

    def sample() -> None:
        while (engine := engine_thread()) is None:
            time.sleep(0.01)
        time.sleep(streams.WARM_S + 1)
        counts.update(sample_stacks(engine.ident, sample_s))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    row = streams.run_row(loaded, n, seconds, SMOKE, pictures)
    sampler.join()
    total = max(1, sum(counts.get("leaf", {}).values()))
    shares = {kind: [(key, round(c / total, 3)) for key, c in counts[kind].most_common(20)] for kind in counts}
    result = {"streams": n, "row": row, "engine_thread": shares}
    print(json.dumps(result, indent=1), flush=True)
    return result


class Timeline:
    """Each engine step (`EngineCore._run_requests` that ran something): when it began, its host
    time, its GPU time (a pair of CUDA events, read after the row), and what it ran: decode rows,
    prefill pieces and their tokens, each pass's tokens and the share of its padded size's graphs
    captured before it ran (below 1: some or all of it eager), vision chunks, graph captures."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.waits: list[tuple[float, int, str]] = []  # (when, id of the lane's listener, request kind)
        self._now: dict | None = None
        self._thread: int | None = None  # the thread stepping (a speech thread's captures are not the step's)

    @contextlib.contextmanager
    def recording(self):
        """Record the steps of every core that runs inside (class-level wrappers, restored after)."""
        originals = [(EngineCore, "_run_requests"), (BatchedRunner, "decode"), (BatchedRunner, "prefill"),
                     (BatchedRunner, "_pass"), (BatchedRunner, "encode"), (CUDAGraphed, "_capture"),
                     (EngineCore, "_wait_on")]
        saved = [(owner, name, owner.__dict__[name]) for owner, name in originals]
        wrapped = [self._step, self._decode, self._prefill, self._pass, self._encode, self._capture, self._wait]
        for (owner, name, inner), wrap in zip(saved, wrapped):
            setattr(owner, name, wrap(inner))
        try:
            yield self
        finally:
            for owner, name, inner in saved:
                setattr(owner, name, inner)
            self.settle()

    def _current(self) -> dict | None:
        """The open step's record, on the thread stepping; None elsewhere."""
        return self._now if threading.get_ident() == self._thread else None

    def _note(self, **counts) -> None:
        if (record := self._current()) is not None:
            for key, value in counts.items():
                record[key] += value

    def _step(self, inner):
        def step(core):
            record = {"t": time.monotonic(), "rows": 0, "pieces": 0, "tokens": 0, "passes": [], "vision": 0,
                      "captures": 0, "events": _events(core.runner.device)}
            self._now, self._thread = record, threading.get_ident()
            try:
                ran = inner(core)
            finally:
                self._now = None
            record["host_ms"] = round((time.monotonic() - record["t"]) * 1e3, 3)
            if record["events"] is not None:
                record["events"][1].record()
            if ran:
                self.steps.append(record)
            return ran

        return step

    def _decode(self, inner):
        def decode(runner, rows, fill=None, pieces=()):
            self._note(rows=len(rows), pieces=len(pieces), tokens=sum(p.ids.numel() for p in pieces))
            return inner(runner, rows, fill, pieces)

        return decode

    def _prefill(self, inner):
        def prefill(runner, pieces):
            self._note(pieces=len(pieces), tokens=sum(p.ids.numel() for p in pieces))
            return inner(runner, pieces)

        return prefill

    def _pass(self, inner):
        def run(runner, x, *args):
            n = x.shape[1]
            padded = runner._passes.get(padded_size(n))
            graphed = sum(g is not None for g in padded.graphs) / len(padded.graphs) if padded is not None else 0.0
            if (record := self._current()) is not None:
                record["passes"].append({"tokens": n, "graphed": round(graphed, 3)})
            return inner(runner, x, *args)

        return run

    def _encode(self, inner):
        def encode(runner, videos):
            self._note(vision=len(videos))
            return inner(runner, videos)

        return encode

    def _capture(self, inner):
        def capture(graphed, pool, stream):
            self._note(captures=1)
            return inner(graphed, pool, stream)

        return capture

    def _wait(self, inner):
        def wait_on(core, lane, item):
            owner = getattr(lane.on_event, "__self__", lane)  # bench_streams' Listener, when it listens
            self.waits.append((time.monotonic(), id(owner), type(item).__name__ if item is not IDLE else "IDLE"))
            return inner(core, lane, item)

        return wait_on

    def settle(self) -> None:
        """Each step's GPU time from its events (waits for the GPU); None on the CPU."""
        if any(record.get("events") is not None for record in self.steps):
            torch.cuda.synchronize()
        for record in self.steps:
            events = record.pop("events", None)
            record["gpu_ms"] = None if events is None else round(events[0].elapsed_time(events[1]), 3)


def _events(device: torch.device):
    if device.type != "cuda":
        return None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    return start, end


def comment_times(listeners: list) -> list[dict]:
    """Each counted comment (past WARM_S): when its chunk's last frame was captured, when it came,
    and its latency (bench_streams' caption latency)."""
    return [{"stream": k, "captured": captured, "at": at, "latency": at - captured}
            for k, listener in enumerate(listeners) for captured, at in listener.timed()]


def tail(steps: list[dict], comments: list[dict], late_s: float = streams.CAPTION_P95_S) -> dict:
    """The steps that ran while a caption was late (between its chunk's capture and its comment,
    for a comment over `late_s`) against the steps of the same span that did not: their mean host
    and GPU time and load, passes run eagerly, captures; and when the late chunks were captured,
    from the first counted chunk's capture (a fresh core's first seconds, or all through the row)."""
    late = [(c["captured"], c["at"]) for c in comments if c["latency"] > late_s]
    start = min((c["captured"] for c in comments), default=None)
    counted = [s for s in steps if start is not None and s["t"] >= start]
    groups: dict[str, list[dict]] = {"late": [], "on_time": []}
    for s in counted:
        groups["late" if any(a <= s["t"] <= b for a, b in late) else "on_time"].append(s)

    def mean(group, key):
        values = [s[key] for s in group if s.get(key) is not None]
        return round(sum(values) / len(values), 2) if values else None

    def summary(group: list[dict]) -> dict:
        passes = [p for s in group for p in s["passes"]]
        return {"steps": len(group), **{f"mean_{k}": mean(group, k) for k in
                                        ("host_ms", "gpu_ms", "rows", "pieces", "tokens", "vision")},
                "passes": len(passes), "eager_passes": sum(p["graphed"] < 1 for p in passes),
                "captures": sum(s["captures"] for s in group)}

    span = counted[-1]["t"] - counted[0]["t"] if len(counted) > 1 else 0.0
    when = [round(a - start, 2) for a, _ in late]  # the late chunks' captures, from the first counted one
    return {"comments": len(comments), "late_comments": len(late),
            "late_captured_s": [min(when), max(when)] if when else None,
            "steps_per_s": round(len(counted) / span, 1) if span else None,
            **{name: summary(group) for name, group in groups.items()}}


STAGES = ("wait", "vision", "prefill", "decode")


def stages(comments: list[dict], waits: list[tuple[float, int, str]], late_s: float = streams.CAPTION_P95_S) -> dict:
    """Where each counted comment's latency went, from its stream's requests (`waits`: when, stream,
    kind): wait (its chunk's capture to the session asking for vision: the session still busy with
    its last chunk, or the frames late), vision (to asking for the prefill), prefill (to its first
    decode request: compactions and the turn), decode (to the comment: its tokens' steps, counted in
    `decodes`). The median and p95 of each, late comments (over `late_s`) against the rest."""
    requests = collections.defaultdict(list)
    for t, stream, kind in waits:
        requests[stream].append((t, kind))
    groups: dict[str, list[dict]] = {"late": [], "on_time": []}
    for c in comments:
        seen = [(t, kind) for t, kind in requests[c["stream"]] if t <= c["at"]]
        encode = next((t for t, kind in reversed(seen) if kind == "Encode"), None)
        if encode is None:
            continue
        prefill = next((t for t, kind in seen if kind == "Prefill" and t >= encode), None)
        decode = next((t for t, kind in seen if kind == "Decode" and prefill is not None and t >= prefill), None)
        if decode is None:
            continue
        groups["late" if c["latency"] > late_s else "on_time"].append({
            "wait": encode - c["captured"], "vision": prefill - encode, "prefill": decode - prefill,
            "decode": c["at"] - decode, "decodes": sum(kind == "Decode" and t >= decode for t, kind in seen)})

    def summary(group: list[dict]) -> dict:
        if not group:
            return {"comments": 0}
        return {"comments": len(group), **{f"{k}_ms": {"p50": round(1e3 * pct([g[k] for g in group], 50), 1),
                                                          "p95": round(1e3 * pct([g[k] for g in group], 95), 1)}
                                            for k in STAGES},
                "decodes_p50": pct([g["decodes"] for g in group], 50)}

    return {name: summary(group) for name, group in groups.items()}


def timeline_row(loaded, n: int, seconds: float, pictures: list, out: Path) -> dict:
    """A plain row of N streams with every engine step recorded (timeline_N.json), and `tail`."""
    timeline, listeners = Timeline(), []
    with timeline.recording():
        row = streams.run_row(loaded, n, seconds, SMOKE, pictures, listeners=listeners)
    comments = comment_times(listeners)
    index = {id(listener): k for k, listener in enumerate(listeners)}
    waits = [(t, index[owner], kind) for t, owner, kind in timeline.waits if owner in index]
    (out / f"timeline_{n}.json").write_text(json.dumps({"steps": timeline.steps, "comments": comments,
                                                        "waits": waits}))
    result = {"streams": n, "row": row, "tail": tail(timeline.steps, comments), "stages": stages(comments, waits)}
    print(json.dumps(result, indent=1), flush=True)
    return result


def timed_ms(fn, reps: int = 10) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / reps


def micro(loaded, pictures: list) -> dict:
    """Isolated costs on an idle GPU: one chunk's preprocessing (host wall, upload included), vision
    of 1, 4 and 16 chunks in one pass and its patch embedding, a graphed decode step of 1, 16 and 32
    rows at 4k context, and a prefill of 1, 8 and 16 pieces of one chunk turn."""
    from engine.model.preprocess import preprocess_frames

    streams._free()
    core = EngineCore(loaded, sessions=33, kv_budget=streams.KV_BUDGET)
    runner, res = core.runner, {}
    frames = pictures[:2]
    res["preprocess_ms"] = timed_ms(lambda: preprocess_frames(frames, DEVICE))
    video = preprocess_frames(frames, DEVICE)
    with torch.inference_mode():
        for n in (1, 4, 16):
            res[f"vision_{n}_ms_per_chunk"] = timed_ms(lambda: runner.encode([video] * n), 5) / n
        pixels = torch.cat([video.pixel_values_videos] * 16)
        embed = runner.net.vision.visual.patch_embed
        res["patch_embed_16_ms_per_chunk"] = timed_ms(lambda: embed(pixels.to(embed.proj.weight.dtype)), 5) / 16
        embeds = runner.encode([video])[0]
    slabs = [core.pool.take() for _ in range(32)]
    for slab in slabs:
        slab.length = 4096
    for n in (1, 16, 32):
        def step(n=n):
            runner.decode([(slab, 5, 5000) for slab in slabs[:n]])
            for slab in slabs[:n]:
                slab.length = 4096
        res[f"decode_{n}_rows_ms"] = timed_ms(step)
    from engine.core.batched import Piece
    vid = loaded.model.config.video_token_id
    ids = torch.tensor([vid] * embeds.shape[0] + [5] * 20, device=DEVICE)
    positions = torch.arange(ids.numel(), device=DEVICE).expand(3, -1) + 5000
    for n in (1, 8, 16):
        def prefill(n=n):
            runner.prefill([Piece(slab, ids, positions, embeds) for slab in slabs[:n]])
            for slab in slabs[:n]:
                slab.length = 4096
        res[f"prefill_{n}x{ids.numel()}_ms"] = timed_ms(prefill, 5)
    res = {k: round(v, 2) for k, v in res.items()}
    print(json.dumps(res, indent=1), flush=True)
    del core
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="24,32")
    ap.add_argument("--seconds", type=float, default=14.0)
    ap.add_argument("--profile-seconds", type=float, default=2.0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--syncs", action="store_true", help="count synchronizing CUDA calls by call site")
    mode.add_argument("--sampled", action="store_true", help="sample the engine thread only (no profiler)")
    mode.add_argument("--timeline", action="store_true", help="record every step; the steps behind late captions")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "/tmp/profile_core"))
    out.mkdir(parents=True, exist_ok=True)
    loaded = streams.build("bf16", SMOKE)
    pictures = streams.images(SMOKE)
    if args.syncs or args.sampled or args.timeline:
        streams.run_row(loaded, 2, 2 * streams.WARM_S, SMOKE, pictures)  # not kept: first-use compiles
        result = {"rows": []}
    else:
        result = {"micro": micro(loaded, pictures), "rows": []}
    for n in map(int, args.streams.split(",")):
        if args.syncs:
            row = sync_sites(loaded, n, args.seconds, pictures)
        elif args.sampled:
            row = sampled(loaded, n, args.seconds, pictures)
        elif args.timeline:
            row = timeline_row(loaded, n, args.seconds, pictures, out)
        else:
            row = run(loaded, n, args.seconds, pictures, args.profile_seconds, out)
        result["rows"].append(row)
        (out / "profile_core.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
