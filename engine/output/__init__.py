"""Outputs shared by every front end: SRT/WebVTT/JSONL/text writers, crash-safe JSONL, and the
narrate-a-file loop that the CLI and the desktop app both call, and its many-files form
(engine.output.narrate)."""

from engine._exports import lazy_exports

_EXPORTS = {
    "LiveSubtitles": ".subtitles", "write_transcript": ".subtitles", "to_srt": ".subtitles", "to_vtt": ".subtitles",
    "to_text": ".subtitles", "JsonlLog": ".jsonl", "WriteError": ".jsonl",
    "NarrationFiles": ".narrate", "narrate_file": ".narrate", "file_capture": ".narrate", "Narration": ".narrate",
    "narrate_files": ".narrate", "narration_core": ".narrate",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
