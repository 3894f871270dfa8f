"""Options shared by the `livecc` commands: model and sampling flags, the session config, the model load."""

from __future__ import annotations

import argparse
import sys

from engine import flags
from engine.defaults import (ANSWER_TOKENS, COMMENT_TOKENS, DEFAULT_MAX_PIXELS, DEFAULT_MODEL, DEFAULT_QUERY,
                             KV_BUDGET, MEMORY_MB, MEMORY_TOKENS, POSITION_RULES, POSITIONS, PRECISIONS, RECALL_K,
                             REPETITION_PENALTY, ROUTER_STRATEGIES, ROUTER_STRATEGY, VIDEO_WINDOW_S, min_pixels_for)
from engine.errors import ConfigValueError, LiveCCError

from .checks import config_option_error, file_path, validate_model_args


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=flags.get("LIVECC_MODEL"),
                   help=f"Hugging Face id or local folder of a Qwen2-VL checkpoint (default {DEFAULT_MODEL}, "
                        "or $LIVECC_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="pixel budget per frame after resizing (default 384*28*28 = %(default)s)")
    p.add_argument("--repetition-penalty", type=float, default=REPETITION_PENALTY,
                   help="default %(default)s; 1.15 curbs repetition")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass when sampling (default 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=COMMENT_TOKENS,
                   help="tokens per 1-second comment (default %(default)s)")
    p.add_argument("--query", default=None, help='instruction for the commentary (default "Please describe the video.")')
    p.add_argument("--kv-budget", type=int, default=KV_BUDGET,
                   help="KV cache budget in tokens; past it the context is compacted (default %(default)s)")
    add_quantize_argument(p)
    add_design_arguments(p)


# Flags that measure a design choice; each dest is the SessionConfig field it sets.
DESIGN_FIELDS = ("positions", "video_window_s", "memory_tokens")


def add_design_arguments(p: argparse.ArgumentParser) -> None:
    """The switches that change what the model sees, so evaluation runs can compare them."""
    p.add_argument("--positions", choices=POSITION_RULES, default=POSITIONS,
                   help="M-RoPE positions: exact 3-D for every chunk (default), or demo = LiveCC demo's 1-D "
                        "positions after the first chunk")
    p.add_argument("--video-window", dest="video_window_s", type=float, default=VIDEO_WINDOW_S, metavar="S",
                   help="seconds of video a compaction keeps (default %(default)s)")
    p.add_argument("--memory-tokens", dest="memory_tokens", type=int, default=MEMORY_TOKENS,
                   help="text memory of earlier comments and answers a compaction keeps (default %(default)s)")


def add_memory_arguments(p: argparse.ArgumentParser) -> None:
    """Visual memory flags (engine/session/memory.py); `memory_options` turns them into SessionConfig fields."""
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="keep key frames of video older than the context and recall them for questions (default on)")
    p.add_argument("--router", default=ROUTER_STRATEGY, choices=ROUTER_STRATEGIES,
                   help="how a question picks key frames (default %(default)s)")
    p.add_argument("--recall-k", type=int, default=RECALL_K,
                   help="key frames recalled per question at most (default %(default)s)")
    p.add_argument("--memory-mb", type=float, default=MEMORY_MB,
                   help="pinned host memory for key frames, MB (default %(default)s)")


def memory_options(args) -> dict:
    if not hasattr(args, "memory"):
        return {}
    return dict(memory=args.memory, router_strategy=args.router, topk=args.recall_k, memory_mb=args.memory_mb)


def add_remote_arguments(p: argparse.ArgumentParser) -> None:
    """Run the session on a `livecc serve` server instead of here."""
    p.add_argument("--server", default=None, help="ws://host:port of a `livecc serve` server: the model runs there")
    p.add_argument("--token", default=flags.get("LIVECC_SERVER_TOKEN"),
                   help="the server's token (default $LIVECC_SERVER_TOKEN)")
    p.add_argument("--frames", choices=("jpeg", "png"), default="jpeg",
                   help="how frames travel to the server: jpeg (quality 90, default) or png (lossless: the same "
                        "model input as a local run)")


def add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """Speech flags come from tts/ when it is installed with the app."""
    try:
        from tts.cli_support import add_speech_arguments as add
    except ImportError:
        return
    add(parser, file_type=file_path)  # `--speech-wav out/` is a folder, as for the other outputs


def session_config(args, live: bool, answer_max_new_tokens: int = ANSWER_TOKENS):
    """The session config from the parsed flags, after every check that can run before the model loads."""
    from engine.session.session import SessionConfig
    from engine.session.text import checked_text

    fields = config_fields(args, live, answer_max_new_tokens)
    checked_text(fields["query"], "--query")  # as a server checks instructions
    try:
        return SessionConfig(**fields)
    except ConfigValueError as exc:
        raise config_option_error(exc) from None
    except ValueError as exc:
        raise LiveCCError(f"bad option: {exc}") from exc


def config_fields(args, live: bool, answer_max_new_tokens: int = ANSWER_TOKENS, local: bool = True) -> dict:
    """The SessionConfig fields the flags set, checked; torch-free, so a remote run sends the same ones.
    `local`: the model runs here, so --device is checked too."""
    validate_model_args(args, answer_max_new_tokens, args.memory_tokens, local)
    return dict(query=args.query or DEFAULT_QUERY, max_new_tokens=args.max_new_tokens,
                repetition_penalty=args.repetition_penalty, temperature=args.temperature, top_p=args.top_p,
                max_pixels=args.max_pixels, min_pixels=min_pixels_for(args.max_pixels), live=live,
                kv_budget=args.kv_budget, answer_max_new_tokens=answer_max_new_tokens, **memory_options(args),
                **{name: getattr(args, name) for name in DESIGN_FIELDS if hasattr(args, name)})


def load(args):
    from engine.model.loading import load_model
    from engine.model.quantize import precision_note

    def progress(stage: str, fraction: float | None) -> None:
        pct = f" {fraction * 100:.0f}%" if fraction is not None else ""
        print(f"\r{stage}{pct}", end="" if fraction not in (None, 1.0) else "\n", file=sys.stderr, flush=True)

    loaded = load_model(args.model, device=args.device, progress=progress, quantize=quant_request(args))
    print(f"livecc: {precision_note(args.quantize, loaded.precision, loaded.plan, loaded.dtype)}", file=sys.stderr)
    return loaded


def add_quantize_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=PRECISIONS, default=flags.get("LIVECC_QUANTIZE"),
                   help="weight precision: auto (bf16 if it fits the GPU with the KV budget, else int8, "
                        "else int4), none, int8 or int4 (default auto, or $LIVECC_QUANTIZE)")


def quant_request(args):
    """The loader's QuantRequest from parsed args: the precision asked for and what the plan must fit."""
    from engine.model.quantize import QuantRequest

    return QuantRequest(args.quantize, args.kv_budget, speech_on_gpu=bool(getattr(args, "speak", False)))
