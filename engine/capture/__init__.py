"""Frames in: `Frame` and the bounded `RingBuffer`, the sources (file, webcam, screen) and the 2 fps `FrameSampler`.
Imports nothing of ours but `engine.errors`."""

from engine._exports import lazy_exports

_EXPORTS = {
    "Frame": ".frames", "RingBuffer": ".frames", "GridBuffer": ".frames",
    "FileSource": ".sources", "WebcamSource": ".sources", "ScreenSource": ".sources", "VideoSource": ".sources",
    "list_monitors": ".sources", "list_webcams": ".sources", "probe_video": ".sources",
    "Chunk": ".sampler", "FrameSampler": ".sampler", "Ticks": ".sampler",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
