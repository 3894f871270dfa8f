"""Our one line per problem, not library chatter: what every front end (the CLI, the desktop app)
calls at start-up, before the libraries the model loads are imported. Torch-free."""

from __future__ import annotations

import logging
import os
import sys
import warnings

CHATTY_LOGGERS = ("transformers", "huggingface_hub", "ChatTTS", "accelerate")


def quiet_third_parties() -> None:
    """Silence deprecation warnings, transformers' notices and progress bars, and FFmpeg's own stderr
    (read by OpenCV when it first loads FFmpeg)."""
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if sys.modules.get("transformers") is not None:  # imported already (tests): its verbosity was read at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
