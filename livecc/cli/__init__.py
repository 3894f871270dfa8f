"""`livecc`, the headless command line (narrate, ask, eval, make-tiny-model). A front end: it may
import anything in `engine` and `tts`; nothing below it imports it."""

from engine._exports import lazy_exports

_EXPORTS = {"main": ".main"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
