"""Coordination between CUDA-graph capture and other GPU work in the same process.

Capturing a CUDA graph registers the default CUDA random generator with the capture; another
thread that draws random numbers on the GPU meanwhile fails ("Offset increment outside graph
capture"). ChatTTS samples on the GPU in the speech thread while
the engine may capture a graph (first question, a new video resolution), so both hold this lock:
the engine for the capture, ChatTTS for each synthesis step.
"""

import threading

CAPTURE_LOCK = threading.RLock()
