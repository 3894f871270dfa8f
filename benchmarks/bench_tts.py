"""ChatTTS at its released size with random weights: time to first audio, real-time factor and
time per code token for a 12-word sentence. Writes JSON + markdown to benchmarks/results/ (or
--out, and $OUT when set) after every row, so a run that dies keeps the rows it finished.

    python benchmarks/bench_tts.py [--device cuda] [--runs 5] [--rows livecc_defaults,livecc_defaults_no_graph]
    python benchmarks/bench_tts.py --device cpu --scale tiny --runs 1   # a smoke run of the script

Random weights stop at random, so every run is forced to the same length (the synthesizer's
token budget for the sentence at a natural speaking rate): what is measured is the cost of
that much speech, which is what the real model pays for it.

Rows: ChatTTS' own streaming (pieces of 24 tokens, the first 2 skipped, no warm-up, the default
CUDA stream, its eager decode), the same without skipped pieces, this package's defaults
(ChatTTSOptions(): the CUDA-graphed code decode among them) and the defaults with the graph off
(LIVECC_TTS_NO_CUDA_GRAPH=1). Every row is timed after one untimed synthesis; the warm-up lever
only moves time into load_s. A row with the graph on also checks, at temperature 1e-4 with a
fixed seed (sampling is then argmax), that the graphed generator's code tokens equal ChatTTS'
own generate's on the same call (on a CPU its eager mode stands in for the graph).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from bench_engine import device_label, write_outputs  # noqa: E402

SENTENCE = "The man in the red jacket walks his dog across the street."  # 12 words
TOKENS_PER_CHAR = 3.3  # ~47 code tokens/s of audio, ~14 characters/s of English speech
RESULTS = Path(__file__).resolve().parent / "results"
LEVERS = ("stream_batch", "pass_first_n_batches", "warm_up", "side_stream", "cuda_graph")
CHATTTS_OWN = dict(stream_batch=24, pass_first_n_batches=2, warm_up=False, side_stream=False,
                   cuda_graph=False)  # ChatTTS' defaults
ROWS = {  # the first two pin ChatTTS' own streaming, whatever this package's defaults become
    "chattts_default_stream": CHATTTS_OWN,
    "stream_no_skipped_batches": dict(CHATTTS_OWN, pass_first_n_batches=0),
    "livecc_defaults": {},  # ChatTTSOptions' defaults (and LIVECC_TTS_* switches), recorded in the row
    "livecc_defaults_no_graph": dict(cuda_graph=False),  # as LIVECC_TTS_NO_CUDA_GRAPH=1
}
COLD = 1e-4  # temperature of the token check: argmax sampling


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


def _sync(synth) -> None:
    import torch

    if synth.device.type == "cuda":
        torch.cuda.synchronize(synth.device)


def _code_call(synth, params):
    """(args, kwargs) that ChatTTS' `_infer_code` passes to `gpt.generate` for SENTENCE."""
    gpt, seen = synth.chat.gpt, {}
    installed = vars(gpt).get("generate")

    def record(*args, **kwargs):
        seen["call"] = args, kwargs
        return iter(())

    gpt.generate = record
    try:
        list(synth.chat._infer_code([SENTENCE], False, synth.device, True, params))
    finally:
        del gpt.generate
        if installed is not None:
            gpt.generate = installed
    return seen["call"]


def _code_tokens(synth, runs: int) -> dict:
    """Milliseconds per code token: the GPT decode alone (prompt, prefill, sampling), no audio decoder."""
    from engine.runtime import CAPTURE_LOCK

    params = synth._params(SENTENCE)
    per_token, n = [], 0
    for _ in range(runs):
        with CAPTURE_LOCK, synth._on_gpu():
            _sync(synth)
            t0 = time.perf_counter()
            out = list(synth.chat._infer_code([SENTENCE], False, synth.device, True, params))[-1]
            _sync(synth)
        n = out.ids[0].shape[0]
        per_token.append((time.perf_counter() - t0) * 1000 / n)
    median = statistics.median(per_token)
    return {"code_tokens": n, "code_ms_per_token": round(median, 3),
            "code_ms_per_token_all": [round(t, 3) for t in per_token],
            "code_rtf": round(median * n / 1000 / (n * 512 / synth.sample_rate), 4)}  # 512 samples a token


def _compare(ours, reference) -> dict:
    ids, ref_ids = ours.ids[0].cpu(), reference.ids[0].cpu()
    if ids.shape != ref_ids.shape:
        return {"tokens_equal": False, "first_different_step": min(len(ids), len(ref_ids)), "hidden_max_abs_diff": None}
    differ = (ids != ref_ids).any(1).nonzero()
    return {"tokens_equal": differ.numel() == 0, "first_different_step": int(differ[0]) if differ.numel() else None,
            "hidden_max_abs_diff": float((ours.hiddens[0] - reference.hiddens[0]).abs().max())}


def _check_tokens(synth) -> dict:
    """The generator's cold, seeded code tokens and hiddens against ChatTTS' own generate, same call
    (and, on a GPU, against the generator's own eager mode, which tells numerics from the graph)."""
    from ChatTTS.model.gpt import GPT

    from engine.runtime import CAPTURE_LOCK
    from tts.chattts_graph import ChatTTSCodeGenerator

    params = dataclasses.replace(synth._params(SENTENCE), temperature=COLD, manual_seed=0)
    gpt = synth.chat.gpt
    on_gpu = synth.device.type == "cuda"
    generator = synth.code_generator if on_gpu else ChatTTSCodeGenerator(gpt, eager=True)
    with CAPTURE_LOCK, synth._on_gpu():
        args, kwargs = _code_call(synth, params)
        runs_before = generator.runs
        ours = list(generator.generate(*args, **kwargs))[-1]
        ran_here = generator.runs == runs_before + 1
        reference = list(GPT.generate(gpt, *args, **kwargs))[-1]
        eager = list(ChatTTSCodeGenerator(gpt, eager=True).generate(*args, **kwargs))[-1] if on_gpu else None
    check = {"generator_ran": ran_here, "graph": on_gpu, "cold_tokens": int(reference.ids[0].shape[0])}
    check |= _compare(ours, reference)
    if eager is not None:
        check["graph_vs_own_eager"] = _compare(ours, eager)
    return check


def _row(assets, device: str, runs: int, levers: dict) -> dict:
    from tts.chattts_synth import ChatTTSOptions, ChatTTSSynth

    options = ChatTTSOptions(asset_dir=assets.root, device=device, tokens_per_char=TOKENS_PER_CHAR,
                             min_token_fraction=1.0, sampling_seed=0, **levers)
    t0 = time.perf_counter()
    synth = ChatTTSSynth(options, config=assets.config)
    load_s = time.perf_counter() - t0  # with the warm-up synthesis (and the graph capture) where warm_up is on
    used = {name: getattr(options, name) for name in LEVERS}
    if synth.device.type != "cuda":  # the warm-up, the side stream and the graph act on CUDA only
        used |= {"warm_up": False, "side_stream": False, "cuda_graph": False}
    try:
        row = _measure(synth, runs) | _code_tokens(synth, runs) | {"load_s": round(load_s, 2)} | used
        row["gpt_dtype"] = str(synth.chat.gpt.gpt.dtype)
        if options.cuda_graph:
            row["check"] = _check_tokens(synth)
        if synth.code_generator is not None:
            gen = synth.code_generator
            row |= {"graphs": gen.graphs, "generator_runs": gen.runs, "handed_to_chattts": gen.handed_over,
                    "capture_error": gen.capture_error}
        return row
    finally:
        synth.close()


def run(device: str, runs: int, scale: str, rows: list[str], date: str, report_each) -> dict:
    import torch

    from tts.chattts_assets import build_random_assets

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        assets = build_random_assets(Path(tmp), scale=scale)
        cfg = assets.config.gpt
        report = {"benchmark": "tts_chattts", "sentence": SENTENCE, "words": len(SENTENCE.split()),
                  "device": device, "device_name": device_label(device), "torch": torch.__version__,
                  "transformers": __import__("transformers").__version__, "date": date,
                  "runs": runs, "scale": scale, "assets_build_s": round(time.perf_counter() - t0, 2),
                  "gpt": {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size}, "results": {}}
        for label in rows:
            try:
                report["results"][label] = _row(assets, device, runs, ROWS[label])
            except Exception as error:  # one shot on a shared GPU: keep the other rows
                report["results"][label] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            report_each(report)
    return report


def _check_line(label: str, check: dict) -> str:
    path = "graph" if check["graph"] else "eager generator (CPU)"
    verdict = "equal" if check["tokens_equal"] else f"DIFFERENT from step {check['first_different_step']}"
    return (f"- {label}: {path} vs ChatTTS' generate at temperature {COLD}, seed 0: {check['cold_tokens']} code "
            f"tokens {verdict}, hidden states max |diff| {check['hidden_max_abs_diff']:.2e}"
            + ("" if check["generator_ran"] else " (the generator handed the call to ChatTTS: not a check)")
            + (f"; graph vs the generator's eager mode: tokens {'equal' if own['tokens_equal'] else 'DIFFERENT'}"
               if (own := check.get("graph_vs_own_eager")) else ""))


def to_markdown(report: dict) -> str:
    lines = [f"# ChatTTS speed, random weights at released size ({report['device_name']}, {report['date'][:10]})",
             "", f"Sentence ({report['words']} words): \"{report['sentence']}\"; torch {report['torch']}, "
             f"transformers {report.get('transformers')}; median of {report['runs']} runs after a warm-up. "
             "Code token: the GPT decode alone (no audio decoder), per token of ~21 ms of audio.", "",
             "| mode | audio (s) | synthesis (s) | real-time factor | time to first audio (s) "
             "| code token (ms) | code decode RTF |",
             "|---|---|---|---|---|---|---|"]
    checks = []
    for label, r in report["results"].items():
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error'][:120]} | | | | | |")
            continue
        levers = f"batch {r.get('stream_batch', 24)}, skip {r['pass_first_n_batches']}" + \
            (", warm-up" if r.get("warm_up") else "") + (", side stream" if r.get("side_stream") else "") + \
            (", CUDA graph" if r.get("cuda_graph") else ", eager decode")
        lines.append(f"| {label} ({levers}) | {r['audio_s']} | {r['synth_s_median']} | {r['rtf']} "
                     f"| {r['ttfa_s_median']} | {r.get('code_ms_per_token')} | {r.get('code_rtf')} |")
        if "check" in r:
            checks.append(_check_line(label, r["check"]))
    return "\n".join(lines + ([""] + checks if checks else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scale", choices=("full", "tiny"), default="full", help="tiny: a CPU smoke run")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--date", default=dt.datetime.now(dt.timezone.utc).date().isoformat(),
                        help="the date the results are labelled with (default today, UTC)")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}: choose from {', '.join(ROWS)}")

    def write(report: dict) -> None:
        stem = f"tts_chattts_{args.scale}_{report['device_name'].replace(' ', '_')}_{report['date']}"
        write_outputs(args.out, {f"{stem}.json": json.dumps(report, indent=2), f"{stem}.md": to_markdown(report)})

    report = run(args.device, args.runs, args.scale, rows, args.date, write)
    print(to_markdown(report))
    failed = [label for label, r in report["results"].items() if "error" in r or not r.get("check", {}).get(
        "tokens_equal", True)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
