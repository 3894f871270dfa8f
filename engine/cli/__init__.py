"""`livecc`, the headless command line (narrate, ask, make-tiny-model) and the subtitle writers.
May import anything in `engine`, and `tts`."""

from engine._exports import lazy_exports

_EXPORTS = {
    "main": ".main",
    "LiveSubtitles": ".subtitles", "write_transcript": ".subtitles", "to_srt": ".subtitles",
    "to_vtt": ".subtitles", "file_capture": ".options",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
