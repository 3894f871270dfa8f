"""Qt-free core of LiveCC Desktop, in subpackages that follow the data flow:
capture (frames in) <- model (weights, preprocessing, prompt, positions) <- runtime (runners) <- session (the
loop, context, events) <- output (writers) <- eval. `engine.errors`, `flags` and `defaults` are shared by all.
The front ends (livecc, desktop_app) import the names below; docs/architecture.md draws the whole tree."""

from engine._exports import lazy_exports

_EXPORTS = {
    "Frame": ".capture", "RingBuffer": ".capture", "GridBuffer": ".capture", "FileSource": ".capture",
    "WebcamSource": ".capture", "ScreenSource": ".capture", "VideoSource": ".capture", "list_monitors": ".capture",
    "list_webcams": ".capture", "probe_video": ".capture",
    "load_model": ".model", "LoadedModel": ".model", "DEFAULT_MODEL": ".defaults",
    "StreamingSession": ".session", "SessionConfig": ".session",
    "Event": ".session", "Answer": ".session", "Commentary": ".session", "Compaction": ".session", "Stats": ".session",
    "StreamEnded": ".session", "Seek": ".session", "event_to_record": ".session", "checked_text": ".session",
    "LiveCCError": ".errors", "OutOfMemoryError": ".errors", "JsonlLog": ".output",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
