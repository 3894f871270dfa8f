"""`livecc eval ovobench` and `livecc eval livesports-cc`: the benchmarks from one command each.

Results go to --out (default eval-results/BENCHMARK/MODEL): results or predictions JSONL appended
per item (a rerun skips finished items), run.json (every setting, the model, the code version),
summary.json and summary.md. Bad input (no data folder, a foreign or malformed annotation file, no
video at all, damaged run files, no judge key, an unreachable or misbehaving judge) prints one line
and exits 2; a missing or unreadable video, a video outside --data or an item that cannot be run
affects only its item and is counted in the summary.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
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
    _common(o, "after any --tasks and --sample")
    o.add_argument("--tasks", type=lambda s: [t.strip().upper() for t in s.split(",") if t.strip()], default=None,
                   help="comma-separated tasks (default all 12: EPM,ASI,HLD,STU,OJR,ATR,ACR,OCR,FPD,REC,SSR,CRR)")
    o.add_argument("--max-answer-tokens", type=int, default=128,
                   help="answer length limit (default 128, as OVO-Bench's Qwen2-VL runner)")
    o.add_argument("--protocol", choices=("official", "stream"), default="official",
                   help="official (default): each forward probe on its own clip, as OVO-Bench's script; stream: "
                        "an item's probes in one stream, earlier answers in context")
    o.add_argument("--skip-failed", action="store_true",
                   help="leave items that failed (missing video, ...) out of the scores instead of scoring them as "
                        "wrong as OVO-Bench does; such scores are not comparable with published ones")
    s = bench.add_parser("livesports-cc", help="LiveSports-3K CC commentary, judged by an LLM against a baseline",
                         description="Comment every LiveSports-3K CC event with LiveCC's evaluation settings, "
                                     "then (with --judge-url) judge the comments against a baseline's.")
    _common(s, "after any --sample")
    s.set_defaults(repetition_penalty=1.15, max_new_tokens=32)  # LiveCC's evaluation settings
    s.add_argument("--not-instruct", action="store_true",
                   help="a base model's prompt (LiveCC's --not_instruct_model): the preceding ASR, else the title")
    s.add_argument("--judge-url", help="OpenAI-compatible API base, e.g. https://api.openai.com/v1")
    s.add_argument("--judge-model", default="gpt-4o-2024-08-06", help="judge model name (default %(default)s)")
    s.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the judge's API key (default %(default)s)")
    s.add_argument("--baseline", type=Path, help="baseline captions JSONL (video_id, event_id, pred), e.g. LiveCC's "
                                                 "evaluation/livesports3kcc/captions/GPT-4o.jsonl")
    s.add_argument("--judge-retries", type=int, default=5, help="tries per judge call (default %(default)s)")
    s.add_argument("--judge-backoff", type=float, default=2.0,
                   help="seconds before the first retry, doubling after each (default %(default)s)")
    s.add_argument("--judge-timeout", type=float, default=120.0,
                   help="seconds a judge call may take in all before it is retried (default %(default)s)")
    s.add_argument("--model-id", help="name of the model in predictions and judgments (default: --model's last part)")
    s.add_argument("--score-only", type=Path, metavar="JUDGMENTS",
                   help="print the win rate of an existing judgments JSONL and exit")


def _common(p: argparse.ArgumentParser, limit_after: str) -> None:
    p.add_argument("--data", type=Path, help="the benchmark's data folder (see docs/evaluation.md)")
    p.add_argument("--limit", type=int, default=None, help=f"only the first N items ({limit_after})")
    p.add_argument("--sample", type=int, default=None, help="a random sample of N items (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default eval-results/BENCHMARK/MODEL)")
    add_model_arguments(p)
    add_memory_arguments(p)  # backward-tracing questions measure the visual memory: --no-memory compares


def _model_id(args) -> str:
    return getattr(args, "model_id", None) or Path(args.model.rstrip("/")).name


def _out(args, bench: str) -> Path:
    return args.out or Path("eval-results") / bench / _model_id(args)


def _check_videos(items: list, video_of, data: Path) -> None:
    """Refuse a run where no video is there at all (unpacked elsewhere); a few missing ones fail alone."""
    from engine.eval.ovobench import ItemError

    example = None
    for item in items:
        try:
            path = video_of(item)
        except ItemError:  # outside --data: fails alone, and its path is not shown
            continue
        if path.exists():
            return
        example = example or path
    if items:
        shown = f" (e.g. {example})" if example else ""
        raise LiveCCError(f"none of the {len(items)} videos was found{shown}: extract the benchmark's videos under "
                          f"{data} (see docs/evaluation.md)")


def _check_judge_options(args) -> None:
    from engine.eval.judge import MAX_BACKOFF_S

    backoff, timeout = getattr(args, "judge_backoff", 0.0), getattr(args, "judge_timeout", 1.0)
    if not 0 <= backoff <= MAX_BACKOFF_S:
        raise bad_option(f"--judge-backoff {backoff:g} must be from 0 to {MAX_BACKOFF_S:g} seconds")
    if not 0 < timeout <= 3600:
        raise bad_option(f"--judge-timeout {timeout:g} must be above 0 and at most 3600 seconds")


def cmd_eval(args) -> int:
    check_finite(args)
    check_counts(args, "limit", "sample", "judge_retries")
    _check_judge_options(args)
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
    _check_videos(items, video_of, args.data)
    config = session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    out = _out(args, "ovobench")
    open_run(out, RunSettings.of("ovobench", args.model, config, protocol=args.protocol))
    model = functools.cache(lambda: load(args))  # loaded for the first item left to do: a finished rerun loads none

    def answer(video: Path, probes: list[tuple[float, str]]) -> list[str]:
        return StreamAnswerer(model(), config)(video, probes)

    summary = run_ovobench(items, answer, video_of, out, _run_info(out), args.protocol, args.skip_failed)
    _print_ovo(summary, out)
    return 0


def _run_info(out: Path) -> dict:
    import json

    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def _print_ovo(summary: dict, out: Path) -> None:
    from engine.eval.harness import failure_reasons

    scores = summary["scores"]
    for task, t in scores["tasks"].items():
        acc = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.2f}"
        print(f"Task: {task}, Acc: {acc}" + (f" ({t['failed']} of its questions failed)" if t["failed"] else ""))
    for group, avg in scores["groups"].items():
        print(f"{group.capitalize()} Avg.: {avg:.2f}")
    if scores["total"] is not None:
        print(f"Total Avg.: {scores['total']:.2f}")
    if summary["failed"]:
        print(f"{summary['failed']} item(s) failed ({failure_reasons(summary)}), {summary['failed_items']}: "
              f"see {out / 'summary.json'}", file=sys.stderr)
    print(f"results: {out / 'results.jsonl'}; summary: {out / 'summary.md'}")


# -- LiveSports-3K CC ------------------------------------------------------------------------------
def _judge_client(args):
    """The judge's client when --judge-url is given (the URL, key and baseline checked before any
    generation), else None."""
    from engine.eval.judge import JudgeClient

    if not args.judge_url:
        return None
    key = os.environ.get(args.judge_key_env, "")
    if not key:
        raise LiveCCError(f"the judge key is not set: export {args.judge_key_env}=... "
                          "(or name another variable with --judge-key-env)")
    if args.baseline is None or not args.baseline.is_file():
        raise LiveCCError(f"baseline captions not found: {args.baseline}: pass --baseline FILE (e.g. LiveCC's "
                          "evaluation/livesports3kcc/captions/GPT-4o.jsonl)")
    return JudgeClient(args.judge_url, args.judge_model, key, args.judge_retries, args.judge_backoff,
                       args.judge_timeout)


def _score_only(args) -> int:
    from engine.eval.judge import judgment_ok, model_id_from_judgments, win_rate
    from engine.eval.records import read_jsonl

    if not args.score_only.is_file():
        raise LiveCCError(f"judgments file not found: {args.score_only}")
    judgments = read_jsonl(args.score_only, judgment_ok, "a judgment (video_event_id, ab_winner, ba_winner)")
    model_id = args.model_id or model_id_from_judgments(args.score_only, judgments)
    print(f"Winning Rate for {model_id}: {win_rate(judgments, model_id):.2f}%")
    return 0


def _judge_hint(args) -> str:
    """This very command with the judge's flags added: the settings match, so it reuses the predictions."""
    argv = list(getattr(args, "argv", None) or ["eval", "livesports-cc", "--data", str(args.data)])
    if not any(a == "--model" or a.startswith("--model=") for a in argv):
        argv += ["--model", args.model]
    argv += ["--judge-url", "https://api.openai.com/v1"] + (["--baseline", "GPT-4o.jsonl"] if args.baseline is None
                                                            else [])
    return (f"to judge them, put the judge's key in ${args.judge_key_env} and LiveCC's evaluation/livesports3kcc/"
            f"captions/GPT-4o.jsonl here, then run:\n  livecc {shlex.join(argv)}")


def cmd_livesports(args) -> int:
    if args.score_only is not None:
        return _score_only(args)
    if args.data is None:
        raise LiveCCError("--data DIR is required: the folder holding LiveSports-3K-CC.json and videos/")
    client = _judge_client(args)  # before hours of generation
    out, model_id, events, predictions = _generate(args)
    if client is None:
        print(f"predictions: {predictions}\n{_judge_hint(args)}")
        return 0
    return _judge(args, client, out, model_id, events, predictions)


def _generate(args):
    from engine.eval.harness import failure_reasons, run_livesports
    from engine.eval.livesports import load_events, video_path
    from engine.eval.ovobench import select
    from engine.eval.records import RunSettings, open_run

    events = select(load_events(args.data), None, args.sample, args.seed, args.limit)
    video_of = lambda e: video_path(args.data, e.video)  # noqa: E731
    _check_videos(events, video_of, args.data)
    config = session_config(args, live=False)
    model_id = _model_id(args)
    out = _out(args, "livesports-cc")
    prompt = "base" if args.not_instruct else "instruct"
    open_run(out, RunSettings.of("livesports-cc", args.model, config, prompt=prompt))
    model = functools.cache(lambda: load(args))  # loaded for the first event left to do

    def comment(video: Path, begin: float, end: float, prompt: str) -> list[str]:
        from engine.eval.streaming import commentate  # torch: only when there is something to generate

        return [c.text for c in commentate(model(), config, video, begin, end, prompt)]

    summary, path = run_livesports(events, comment, video_of, out, model_id, _run_info(out), not args.not_instruct)
    if summary["failed"]:
        print(f"{summary['failed']} event(s) failed ({failure_reasons(summary)}): see {out / 'summary.json'}",
              file=sys.stderr)
    return out, model_id, events, path


def _judge(args, client, out: Path, model_id: str, events, predictions: Path) -> int:
    import json

    from engine.eval.judge import judge_all, judgment_ok
    from engine.eval.livesports import prediction_key, prediction_ok
    from engine.eval.records import ResultLog, read_jsonl

    baseline_id = args.baseline.stem
    what = "a caption record (video_id, event_id, pred)"
    baseline = {prediction_key(r): r["pred"] for r in read_jsonl(args.baseline, prediction_ok, what)}
    preds = {prediction_key(r): r["pred"] for r in read_jsonl(predictions, prediction_ok, what)}
    if any(not e.asr for e in events if e.key in preds):
        raise LiveCCError(f"the annotation file in {args.data} has no human commentary (event_asr_text): use "
                          "LiveSports-3K-CC.json or LiveSports-3K-CC-test-gt.csv")
    log = ResultLog(out / f"{baseline_id}_{model_id}.jsonl", key=lambda r: r["video_event_id"], valid=judgment_ok,
                    what="a judgment (video_event_id, ab_winner, ba_winner)")
    result = judge_all(events, preds, baseline, client.complete, model_id, baseline_id, log)
    result |= {"judgments": str(log.path), "judge_model": args.judge_model, "judge_url": client.endpoint}
    (out / "judge.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["win_rate"] is not None:
        print(f"Winning Rate for {model_id} vs. {baseline_id}: {result['win_rate']:.2f}% "
              f"({result['judged']} events, judgments: {log.path})")
    return 0
