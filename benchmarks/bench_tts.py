"""ChatTTS at its released size with random weights: time to first audio and real-time factor
for a 12-word sentence. Writes JSON + markdown to benchmarks/results/ (or --out, and $OUT when set).

    python benchmarks/bench_tts.py [--device cuda] [--runs 5]

Random weights stop at random, so every run is forced to the same length (the synthesizer's
token budget for the sentence at a natural speaking rate): what is measured is the cost of
that much speech, which is what the real model pays for it.

Rows: ChatTTS' own streaming (pieces of 24 tokens, the first 2 skipped, no warm-up, the default
CUDA stream), the same without skipped pieces, and this package's defaults (ChatTTSOptions()).
Every row is timed after one untimed synthesis; the warm-up lever only moves time into load_s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from bench_engine import device_label, write_outputs  # noqa: E402

SENTENCE = "The man in the red jacket walks his dog across the street."  # 12 words
TOKENS_PER_CHAR = 3.3  # ~47 code tokens/s of audio, ~14 characters/s of English speech
RESULTS = Path(__file__).resolve().parent / "results"
LEVERS = ("stream_batch", "pass_first_n_batches", "warm_up", "side_stream")
CHATTTS_OWN = dict(stream_batch=24, pass_first_n_batches=2, warm_up=False, side_stream=False)  # ChatTTS' defaults
ROWS = {  # the first two pin ChatTTS' own streaming, whatever this package's defaults become
    "chattts_default_stream": CHATTTS_OWN,
    "stream_no_skipped_batches": dict(CHATTTS_OWN, pass_first_n_batches=0),
    "livecc_defaults": {},  # ChatTTSOptions' defaults (and LIVECC_TTS_* switches), recorded in the row
}


def _time_stream(synth, text: str) -> tuple[float, float, int]:
    """(seconds to the first piece, seconds to the last, samples)."""
    t0 = time.perf_counter()
    first, samples = None, 0
    for piece in synth.stream(text):
        first = first if first is not None else time.perf_counter() - t0
        samples += len(piece)
    return first or float("nan"), time.perf_counter() - t0, samples


def _measure(synth, runs: int) -> dict:
    synth.synthesize(SENTENCE)  # warm-up: kernels, allocator, numba
    whole, ttfa, audio_s = [], [], 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        audio = synth.synthesize(SENTENCE)
        whole.append(time.perf_counter() - t0)
        audio_s = len(audio) / synth.sample_rate
        ttfa.append(_time_stream(synth, SENTENCE)[0])
    median = statistics.median(whole)
    return {"audio_s": round(audio_s, 3), "synth_s_median": round(median, 4),
            "rtf": round(median / audio_s, 4) if audio_s else None,
            "ttfa_s_median": round(statistics.median(ttfa), 4), "ttfa_s_all": [round(t, 4) for t in ttfa],
            "synth_s_all": [round(t, 4) for t in whole]}


def run(device: str, runs: int, scale: str = "full") -> dict:
    import torch

    from tts.chattts_assets import build_random_assets
    from tts.chattts_synth import ChatTTSOptions, ChatTTSSynth

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        assets = build_random_assets(Path(tmp), scale=scale)
        build_s = time.perf_counter() - t0
        for label, levers in ROWS.items():
            options = ChatTTSOptions(asset_dir=assets.root, device=device, tokens_per_char=TOKENS_PER_CHAR,
                                     min_token_fraction=1.0, sampling_seed=0, **levers)
            t0 = time.perf_counter()
            synth = ChatTTSSynth(options, config=assets.config)
            load_s = time.perf_counter() - t0  # with the warm-up synthesis where warm_up is on
            used = {name: getattr(options, name) for name in LEVERS}
            if synth.device.type != "cuda":  # the warm-up and the side stream act on CUDA only
                used |= {"warm_up": False, "side_stream": False}
            results[label] = _measure(synth, runs) | {"load_s": round(load_s, 2)} | used
            synth.close()
    cfg = assets.config.gpt
    return {"benchmark": "tts_chattts", "sentence": SENTENCE, "words": len(SENTENCE.split()),
            "device": device, "device_name": device_label(device), "torch": torch.__version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": runs, "scale": scale, "assets_build_s": round(build_s, 2),
            "gpt": {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size}, "results": results}


def to_markdown(report: dict) -> str:
    lines = [f"# ChatTTS speed, random weights at released size ({report['device_name']}, {report['date'][:10]})",
             "", f"Sentence ({report['words']} words): \"{report['sentence']}\"; torch {report['torch']}; "
             f"median of {report['runs']} runs after a warm-up.", "",
             "| mode | audio (s) | synthesis (s) | real-time factor | time to first audio (s) |",
             "|---|---|---|---|---|"]
    for label, r in report["results"].items():
        levers = f"batch {r.get('stream_batch', 24)}, skip {r['pass_first_n_batches']}" + \
            (", warm-up" if r.get("warm_up") else "") + (", side stream" if r.get("side_stream") else "")
        lines.append(f"| {label} ({levers}) | {r['audio_s']} | {r['synth_s_median']} "
                     f"| {r['rtf']} | {r['ttfa_s_median']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scale", choices=("full", "tiny"), default="full", help="tiny: a CPU smoke run")
    args = parser.parse_args(argv)
    report = run(args.device, args.runs, args.scale)
    stem = f"tts_chattts_{args.scale}_{report['device_name'].replace(' ', '_')}_{report['date'][:10]}"
    write_outputs(args.out, {f"{stem}.json": json.dumps(report, indent=2), f"{stem}.md": to_markdown(report)})
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
