"""Caption latency of N live streams over the server's WebSocket against in-process, same N, same run.

    python benchmarks/bench_serve.py [--streams 1,8,16] [--seconds 15] [--frames jpeg|png]
    python benchmarks/bench_serve.py --smoke     # CPU: the tiny model, 1 and 2 streams

The server is the ASGI app under uvicorn in this process (what `livecc serve --no-ray` runs: Ray's
wheel does not reach the GPU machine), on loopback, with random LiveCC-7B weights and one replica
of N sessions. The N clients run in a child process, as remote users would (their encoding and
reading do not share the server's interpreter): each sends bench_streams' 16 pictures at the
model's size, encoded once, at 2 fps in real time with their capture timestamps. In-process, the
same frames at the same pace go into the ring buffers of one EngineCore. Sessions as bench_streams'
(live, 16 tokens a chunk, EOS ignored). Latency runs from the capture (the send) of a chunk's last
frame to its commentary; the first WARM_S seconds are not counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

FPS = 2.0  # what a client sends (docs/protocol.md): the model's frame rate
WARM_S = 5.0
RESULTS = ROOT / "benchmarks" / "results"


# -- the clients (a child process: no torch needed) -------------------------------------------------
def client(url: str, k: int, n: int, t0: float, seconds: float, frames: list[str], fmt: str, out: dict) -> None:
    """Stream k: frames at FPS from t0 + k/n, commentary latencies into out[k]."""
    from livecc.client.session import RemoteSession
    from engine.session.events import Commentary

    time.sleep(max(0.0, t0 + k / n - time.monotonic()))
    sent: dict[float, float] = {}
    latencies, errors = [], []
    try:
        session = RemoteSession.connect(url)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        out[k] = {"latencies": [], "errors": [repr(exc)]}
        return

    def send() -> None:
        start = time.monotonic()
        for i in range(int(seconds * FPS)):
            time.sleep(max(0.0, start + i / FPS - time.monotonic()))
            sent[i / FPS] = time.monotonic()
            session.send({"type": "input_video_buffer.append", "format": fmt, "timestamp": i / FPS,
                          "frame": frames[(i + k) % len(frames)]})  # live: no duration, as in-process
        session.end()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        for event in session.events():
            last = sent.get(event.end - 1 / FPS) if isinstance(event, Commentary) else None  # i / FPS: exact
            if last is not None and event.end > WARM_S:
                latencies.append(time.monotonic() - last)
    except Exception as exc:  # noqa: BLE001 - reported in the results
        errors.append(repr(exc))
    sender.join(timeout=5)
    session.close()
    out[k] = {"latencies": latencies, "errors": errors}


def clients(url: str, n: int, seconds: float, frames: list[str], fmt: str, results) -> None:
    out: dict[int, dict] = {}
    t0 = time.monotonic() + 0.5
    threads = [threading.Thread(target=client, args=(url, k, n, t0, seconds, frames, fmt, out)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(out)


# -- the server, and the in-process run -------------------------------------------------------------
def over_websocket(loaded, n: int, seconds: float, frames: list[str], fmt: str, smoke: bool) -> dict:
    import bench_streams as streams
    from livecc.server.local import uvicorn_server
    from livecc.server.replica import Replica
    from livecc.server.settings import ServerSettings

    streams._free()
    replica = Replica(ServerSettings("random-livecc-7b", sessions=n, kv_budget=streams.KV_BUDGET,
                                     max_frames_per_s=FPS * 4), loaded=loaded)
    replica.base_config = lambda: streams.config(smoke)  # the sessions of bench_streams
    ready, port = threading.Event(), []
    server = uvicorn_server(replica, "127.0.0.1", 0, on_ready=lambda p: (port.append(p), ready.set()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ready.wait(120)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=clients, args=(f"ws://127.0.0.1:{port[0]}", n, seconds, frames, fmt, results))
    child.start()
    out = results.get(timeout=seconds + 120)
    child.join(30)
    server.should_exit = True
    thread.join(60)
    latencies = [v for r in out.values() for v in r["latencies"]]
    return {"caption_latency_s": streams.spread(latencies), "errors": [e for r in out.values() for e in r["errors"]]}


def in_process(loaded, n: int, seconds: float, pictures: list, smoke: bool) -> dict:
    import bench_streams as streams
    from bench_live import PacedSource
    from engine.capture.frames import RingBuffer
    from engine.core.engine import EngineCore

    streams._free()
    core = EngineCore(loaded, sessions=n, kv_budget=streams.KV_BUDGET)
    core.start()
    listeners, t0 = [], time.monotonic()
    for k in range(n):
        time.sleep(max(0.0, t0 + k / n - time.monotonic()))
        buffer = RingBuffer(64)
        source = PacedSource(seconds, pictures[k % len(pictures):] + pictures[:k % len(pictures)], fps=FPS)
        listener = streams.Listener(source)
        core.open(buffer, streams.config(smoke), listener.on_event, listener.on_end)
        source.start(buffer)
        listeners.append(listener)
    for listener in listeners:
        listener.done.wait(timeout=seconds + 60)
    core.close()
    latencies = [at - x.source.capture_time(end - 1 / FPS) for x in listeners for end, at in x.comments if end > WARM_S]
    return {"caption_latency_s": streams.spread(latencies),
            "errors": [repr(x.error) for x in listeners if x.error is not None]}


def main() -> None:
    import bench_streams as streams
    from bench_engine import device_label, write_outputs
    from livecc import protocol as wire

    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="1,8,16")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--frames", choices=("jpeg", "png"), default="jpeg")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.smoke:
        args.streams, args.seconds = "1,2", 8.0
    loaded = streams.build("bf16", args.smoke)
    pictures = streams.images(args.smoke)
    frames = [wire.encode_frame(p, args.frames) for p in pictures]
    device = device_label("cuda" if torch.cuda.is_available() else "cpu")
    result = {"date": dt.date.today().isoformat(), "device": device, "frames": args.frames,
              "seconds_per_row": args.seconds, "rows": []}
    for n in map(int, args.streams.split(",")):
        local = in_process(loaded, n, args.seconds, pictures, args.smoke)
        remote = over_websocket(loaded, n, args.seconds, frames, args.frames, args.smoke)
        p95 = (remote["caption_latency_s"]["p95"] or 0) - (local["caption_latency_s"]["p95"] or 0)
        row = {"streams": n, "in_process": local, "websocket": remote, "added_p95_s": round(p95, 3)}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        stamp = f"{result['date']}_{device.replace(' ', '-')}"
        write_outputs(args.out, {f"serve_{stamp}.json": json.dumps(result, indent=1), f"serve_{stamp}.md": markdown(result)})
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# Caption latency over the WebSocket: {result['device']}, {result['date']}", "",
             f"Random LiveCC-7B weights; N live streams at 2 fps ({result['frames']} frames at the model's size), "
             f"16 tokens a chunk, {result['seconds_per_row']:.0f} s a row (first {WARM_S:.0f} s not counted); the "
             "server is the ASGI app under uvicorn on loopback, the clients another process.", "",
             "| streams | in-process p50 / p95 (s) | WebSocket p50 / p95 (s) | added at p95 (ms) | errors |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        a, b = r["in_process"]["caption_latency_s"], r["websocket"]["caption_latency_s"]
        errors = len(r["in_process"]["errors"]) + len(r["websocket"]["errors"])
        lines.append(f"| {r['streams']} | {a['p50']} / {a['p95']} | {b['p50']} / {b['p95']} | "
                     f"{r['added_p95_s'] * 1e3:.0f} | {errors} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
