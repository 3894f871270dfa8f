"""Benchmarks that measure answer and commentary quality: OVO-Bench (multiple-choice questions asked
at a moment of a stream) and LiveSports-3K CC (commentary judged by an LLM against a baseline).
Owns the benchmarks' data formats, the official prompts and scoring, the LLM judge client, and the
resumable run loop that plays each item through `StreamingSession`.
May import `engine.session` and below (`engine.runtime`, `engine.model`, `engine.capture`)."""

from engine._exports import lazy_exports

_EXPORTS = {
    "load_ovobench": ".ovobench", "OvoItem": ".ovobench", "Probe": ".ovobench",
    "score_records": ".ovoscore", "scores_markdown": ".ovoscore",
    "run_items": ".harness", "RunSettings": ".records",
    "StreamAnswerer": ".streaming", "commentate": ".streaming",
    "load_events": ".livesports", "SportsEvent": ".livesports",
    "JudgeClient": ".judge", "JudgeError": ".judge", "win_rate": ".judge",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
