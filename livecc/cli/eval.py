"""`livecc eval ovobench` and `livecc eval livesports-cc`: the benchmarks from one command each.

Results go to --out (default eval-results/BENCHMARK/MODEL): results or predictions JSONL appended
per item (a rerun skips finished items), run.json (every setting, the model, the code version),
summary.json and summary.md. Bad input (no data folder, a foreign annotation file, no video at all,
no judge key, an unreachable judge) prints one line and exits 2; a missing or unreadable video
affects only its item and is counted in the summary.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from engine.errors import LiveCCError

from .checks import bad_option, check_counts, check_finite
from .options import add_memory_arguments, add_model_arguments, load, session_config


def add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="run a benchmark: OVO-Bench or LiveSports-3K CC",
                       description="Measure answer and commentary quality on a public benchmark.")
    bench = e.add_subparsers(dest="benchmark", required=True)
    o = bench.add_parser("ovobench", help="OVO-Bench multiple-choice questions asked during the stream",
                         description="Play each OVO-Bench video as a live stream and ask its questions at their times.")
    _common(o)
    o.add_argument("--tasks", type=lambda s: [t.strip().upper() for t in s.split(",") if t.strip()], default=None,
                   help="comma-separated tasks (default all 12: EPM,ASI,HLD,STU,OJR,ATR,ACR,OCR,FPD,REC,SSR,CRR)")
    o.add_argument("--max-answer-tokens", type=int, default=128,
                   help="answer length limit (default 128, as OVO-Bench's Qwen2-VL runner)")
    s = bench.add_parser("livesports-cc", help="LiveSports-3K CC commentary, judged by an LLM against a baseline",
                         description="Comment every LiveSports-3K CC event with LiveCC's evaluation settings, "
                                     "then (with --judge-url) judge the comments against a baseline's.")
    _common(s)
    s.set_defaults(repetition_penalty=1.15, max_new_tokens=32)  # LiveCC's evaluation settings
    s.add_argument("--judge-url", help="OpenAI-compatible API base, e.g. https://api.openai.com/v1")
    s.add_argument("--judge-model", default="gpt-4o-2024-08-06", help="judge model name (default %(default)s)")
    s.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (default %(default)s)")
    s.add_argument("--baseline", type=Path, help="baseline captions JSONL (video_id, event_id, pred), e.g. LiveCC's "
                                                 "evaluation/livesports3kcc/captions/GPT-4o.jsonl")
    s.add_argument("--judge-retries", type=int, default=5, help="tries per judge call (default %(default)s)")
    s.add_argument("--judge-backoff", type=float, default=2.0,
                   help="seconds before the first retry, doubling after each (default %(default)s)")
    s.add_argument("--model-id", help="name of the model in predictions and judgments (default: --model's last part)")
    s.add_argument("--score-only", type=Path, metavar="JUDGMENTS",
                   help="print the win rate of an existing judgments JSONL and exit")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="the benchmark's data folder (see docs/evaluation.md)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (after any --tasks and --sample)")
    p.add_argument("--sample", type=int, default=None, help="a random sample of N items (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default eval-results/BENCHMARK/MODEL)")
    add_model_arguments(p)
    add_memory_arguments(p)  # backward-tracing questions measure the visual memory: --no-memory compares


def _model_id(args) -> str:
    return getattr(args, "model_id", None) or Path(args.model.rstrip("/")).name


def _out(args, bench: str) -> Path:
    return args.out or Path("eval-results") / bench / _model_id(args)


def _check_videos(paths: list[Path], data: Path) -> None:
    missing = [p for p in paths if not p.exists()]
    if paths and len(missing) == len(paths):
        raise LiveCCError(f"none of the {len(paths)} videos was found (e.g. {missing[0]}): extract the benchmark's "
                          f"videos under {data} (see docs/evaluation.md)")


def cmd_eval(args) -> int:
    check_finite(args)
    check_counts(args, "limit", "sample", "judge_retries")
    if getattr(args, "judge_backoff", 0.0) < 0:
        raise bad_option(f"--judge-backoff {args.judge_backoff} must not be negative")
    return cmd_ovobench(args) if args.benchmark == "ovobench" else cmd_livesports(args)


# -- OVO-Bench -------------------------------------------------------------------------------------
def cmd_ovobench(args) -> int:
    from engine.eval.harness import run_ovobench
    from engine.eval.ovobench import TASKS, load_ovobench, select, video_path
    from engine.eval.records import RunSettings, open_run
    from engine.eval.streaming import StreamAnswerer

    if args.data is None:
        raise LiveCCError("--data DIR is required: the folder holding ovo_bench_new.json and src_videos/")
    unknown = sorted(set(args.tasks or []) - set(TASKS))
    if unknown:
        raise LiveCCError(f"unknown task {', '.join(unknown)}: choose from {','.join(TASKS)}")
    items = select(load_ovobench(args.data), args.tasks, args.sample, args.seed, args.limit)
    video_of = lambda item: video_path(args.data, item.video)  # noqa: E731
    _check_videos([video_of(i) for i in items], args.data)
    config = session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    out = _out(args, "ovobench")
    settings = RunSettings.of("ovobench", args.model, config)
    open_run(out, settings)
    model = functools.cache(lambda: load(args))  # loaded for the first item left to do: a finished rerun loads none

    def answer(video: Path, probes: list[tuple[float, str]]) -> list[str]:
        return StreamAnswerer(model(), config)(video, probes)

    summary = run_ovobench(items, answer, video_of, out, _run_info(out))
    _print_ovo(summary, out)
    return 0


def _run_info(out: Path) -> dict:
    import json

    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def _print_ovo(summary: dict, out: Path) -> None:
    scores = summary["scores"]
    for task, t in scores["tasks"].items():
        print(f"Task: {task}, Acc: {t['accuracy']:.2f}")
    for group, avg in scores["groups"].items():
        print(f"{group.capitalize()} Avg.: {avg:.2f}")
    if scores["total"] is not None:
        print(f"Total Avg.: {scores['total']:.2f}")
    if summary["failed"]:
        print(f"{summary['failed']} item(s) failed (missing or unreadable video): see {out / 'summary.json'}",
              file=sys.stderr)
    print(f"results: {out / 'results.jsonl'}; summary: {out / 'summary.md'}")


# -- LiveSports-3K CC ------------------------------------------------------------------------------
def _judge_key(args) -> str | None:
    if not args.judge_url:
        return None
    key = os.environ.get(args.judge_key_env, "")
    if not key:
        raise LiveCCError(f"the judge key is not set: export {args.judge_key_env}=... "
                          "(or name another variable with --judge-key-env)")
    if args.baseline is None or not args.baseline.is_file():
        raise LiveCCError(f"baseline captions not found: {args.baseline}: pass --baseline FILE (e.g. LiveCC's "
                          "evaluation/livesports3kcc/captions/GPT-4o.jsonl)")
    return key


def cmd_livesports(args) -> int:
    from engine.eval.judge import model_id_from_judgments, win_rate
    from engine.eval.records import read_jsonl

    if args.score_only is not None:
        if not args.score_only.is_file():
            raise LiveCCError(f"judgments file not found: {args.score_only}")
        model_id = args.model_id or model_id_from_judgments(args.score_only)
        rate = win_rate(read_jsonl(args.score_only), model_id)
        print(f"Winning Rate for {model_id}: {rate:.2f}%")
        return 0
    if args.data is None:
        raise LiveCCError("--data DIR is required: the folder holding LiveSports-3K-CC.json and videos/")
    key = _judge_key(args)  # before hours of generation
    out, model_id, events, predictions = _generate(args)
    if key is None:
        print(f"predictions: {predictions}\nto judge them: livecc eval livesports-cc --data {args.data} "
              f"--out {out} --judge-url URL --judge-model M --baseline GPT-4o.jsonl (key in ${args.judge_key_env})")
        return 0
    return _judge(args, key, out, model_id, events, predictions)


def _generate(args):
    from engine.eval.harness import run_livesports
    from engine.eval.livesports import load_events, video_path
    from engine.eval.ovobench import select
    from engine.eval.records import RunSettings, open_run

    events = select(load_events(args.data), None, args.sample, args.seed, args.limit)
    video_of = lambda e: video_path(args.data, e.video)  # noqa: E731
    _check_videos([video_of(e) for e in events], args.data)
    config = session_config(args, live=False)
    model_id = _model_id(args)
    out = _out(args, "livesports-cc")
    open_run(out, RunSettings.of("livesports-cc", args.model, config))
    model = functools.cache(lambda: load(args))  # loaded for the first event left to do

    def comment(video: Path, begin: float, end: float, prompt: str) -> list[str]:
        from engine.eval.streaming import commentate  # torch: only when there is something to generate

        return [c.text for c in commentate(model(), config, video, begin, end, prompt)]

    summary, path = run_livesports(events, comment, video_of, out, model_id, _run_info(out))
    if summary["failed"]:
        print(f"{summary['failed']} event(s) failed: see {out / 'summary.json'}", file=sys.stderr)
    return out, model_id, events, path


def _judge(args, key: str, out: Path, model_id: str, events, predictions: Path) -> int:
    import json

    from engine.eval.judge import JudgeClient, judge_all
    from engine.eval.livesports import prediction_key
    from engine.eval.records import ResultLog, read_jsonl

    baseline_id = args.baseline.stem
    baseline = {prediction_key(r): r["pred"] for r in read_jsonl(args.baseline)}
    preds = {prediction_key(r): r["pred"] for r in read_jsonl(predictions)}
    if any(not e.asr for e in events if e.key in preds):
        raise LiveCCError(f"the annotation file in {args.data} has no human commentary (event_asr_text): use "
                          "LiveSports-3K-CC.json or LiveSports-3K-CC-test-gt.csv")
    client = JudgeClient(args.judge_url, args.judge_model, key, args.judge_retries, args.judge_backoff)
    log = ResultLog(out / f"{baseline_id}_{model_id}.jsonl", key=lambda r: r["video_event_id"])
    result = judge_all(events, preds, baseline, client.complete, model_id, baseline_id, log)
    result |= {"judgments": str(log.path), "judge_model": args.judge_model, "judge_url": client.endpoint}
    (out / "judge.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["win_rate"] is not None:
        print(f"Winning Rate for {model_id} vs. {baseline_id}: {result['win_rate']:.2f}% "
              f"({result['judged']} events, judgments: {log.path})")
    return 0
