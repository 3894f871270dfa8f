"""The streaming session: the step loop, decoding, the bounded context, the visual memory and its
router, and the events it emits.
May import `engine.capture`, `engine.model` and `engine.runtime`."""

from engine._exports import lazy_exports

_EXPORTS = {
    "StreamingSession": ".session", "SessionConfig": ".session",
    "Event": ".events", "Answer": ".events", "Commentary": ".events", "Compaction": ".events", "Stats": ".events",
    "StreamEnded": ".events", "Seek": ".events", "event_to_record": ".events",
    "KeyFrame": ".memory", "KeyFrameMemory": ".memory", "Router": ".router", "named_time": ".router",
    "Recall": ".recall", "checked_text": ".text", "TextError": ".text",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
