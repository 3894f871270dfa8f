"""What the status bar says: the permanent fields (model, lag, chunk, dropped, context, memory,
speech, voice), formatted from the engine's events, and the transient messages beside them."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtWidgets import QStatusBar

from desktop_app.about import describe_model
from desktop_app.settings import SERVER
from desktop_app.status_fields import StatusFields
from engine import Compaction, Stats

SPEECH_STATE_CHARS = 44  # longer states (errors) are cut in the status bar; the tooltip has all

FIELDS = (  # key, initial text, the widest text it shows (longer is elided), tooltip, priority (lower hides
    # first), permanent (stays beside a temporary message). Without the voice they fit 1280 px.
    ("lag", "Lag –", "Lag 9999 ms", "How far the engine is behind the live video", 3, False),
    ("chunk", "Chunk –", "Chunk 999 ms", "Time to process the last 1-second chunk", 2, False),
    ("dropped", "Dropped 0", "Dropped 999 · skipped 99", "Frames the engine could not keep up with", 1, False),
    ("context", "Context –", "Context 100% · 9 compactions", "KV cache used, as a share of its budget; a "
                                                              "compaction keeps the last seconds of video "
                                                              "and a text memory", 3, False),
    ("memory", "Memory –", "Memory 999 key frames · 999 MB",
     "Visual memory: key frames of older video that questions can recall, and the host memory they use", 3, False),
    ("voice", "Voice –", "Voice +9.9 s", "How far behind its video the voice starts (last phrases)", 2, False),
    ("model", "Model: not loaded", "Model: tiny-qwen2-vl on CPU (float32)", "Model and compute device", 5, True),
    ("speech", "Speech: off", "Speech: speaking (espeak-ng)", "Speech output", 4, True),
)


def speech_status(state: str, engine: str) -> str:
    """The speech field's text: the gist of an error (the message bar and tooltip have the fix)."""
    if state.startswith("error: "):
        short = "Speech: error: " + re.split(r"[:;(]", state[len("error: "):], maxsplit=1)[0].strip()
    else:
        short = f"Speech: {state}" + (f" ({engine})" if engine and state != "off" else "")
    return short if len(short) <= SPEECH_STATE_CHARS else short[:SPEECH_STATE_CHARS - 1] + "…"


class StatusPresenter:
    """Owns the status bar's fields (`fields[key]` is a field's QLabel) and formats what they show."""

    def __init__(self, bar: QStatusBar):
        self.bar = bar
        self.fields = StatusFields(bar)
        for key, text, widest, tip, priority, permanent in FIELDS:
            self.fields.add(key, text, widest, tip, priority, permanent)
        self._compactions = 0
        self._budget = 0

    def message(self, text: str, ms: int = 0) -> None:
        self.bar.showMessage(text, ms)

    # -- the model --------------------------------------------------------------------------------
    def model_loading(self, name: str, precision: str = "auto") -> None:
        wanted = "" if precision == "auto" else f" ({'full precision' if precision == 'none' else precision})"
        text = f"Model: loading {Path(name).name or name}{wanted}…"
        if precision == SERVER:  # Settings > Engine > Server: "loading" is connecting to it
            text = f"Model: connecting to {name}…"
        self.fields["model"].setText(text)
        self.fields["model"].setToolTip(text)
        self.message(text[len("Model: "):].capitalize(), 0)

    def model_loaded(self, loaded) -> None:
        described = describe_model(loaded)
        self.fields["model"].setText(f"Model: {described}")
        # the field may elide the text: the tooltip has all of it
        self.fields["model"].setToolTip("\n".join([described, loaded.name, *loaded.notes]))
        self.message(f"Model ready: {described}", 6000)

    def model_missing(self, why: str = "not loaded") -> None:
        self.fields["model"].setText(f"Model: {why}")

    # -- a run ------------------------------------------------------------------------------------
    def new_run(self) -> None:
        self._compactions, self._budget = 0, 0
        self.fields["context"].setText("Context –")

    def stats(self, s: Stats) -> None:
        self.fields["lag"].setText(f"Lag {s.lag_ms:.0f} ms")
        self.fields["chunk"].setText(f"Chunk {s.total_ms:.0f} ms")
        self.fields["dropped"].setText(f"Dropped {s.frames_dropped}" + (f" · skipped {s.chunks_skipped}"
                                                                      if s.chunks_skipped else ""))
        self._compactions, self._budget = s.compactions, s.budget_tokens
        self._context(s.context_fraction)
        self.fields["memory"].setText(f"Memory {s.memory_key_frames} key frames · {s.memory_mb:.0f} MB")

    def compaction(self, c: Compaction) -> None:
        self._compactions += 1  # the next Stats confirms the count
        if self._budget:
            self._context(c.tokens_after / self._budget)
        self.message(f"Context compacted: {c.tokens_before} → {c.tokens_after} tokens ({c.ms:.0f} ms)", 6000)

    def _context(self, fraction: float) -> None:
        n = self._compactions
        self.fields["context"].setText(f"Context {fraction:.0%}" +
                                       (f" · {n} compaction{'s' if n != 1 else ''}" if n else ""))

    def stream_ended(self, time_s: float, answers: bool = True) -> None:
        """`answers`: the session goes on answering after the end (else it has been closed on the server)."""
        after = "questions are still answered" if answers else "the server has closed the session"
        self.message(f"End of video at {time_s:.1f} s: {after}", 8000)

    # -- speech -----------------------------------------------------------------------------------
    def speech(self, state: str, engine: str, voice: str, device: str) -> None:
        label = self.fields["speech"]
        label.setText(speech_status(state, engine))
        self.fields.want("voice", state != "off" and not state.startswith("error: "))  # no voice, no lag
        label.setToolTip(f"Speech: {state}\nVoice: {voice or 'default (ChatTTS, else espeak-ng)'}; "
                         f"output: {device or 'system default'}. Toggle with Ctrl+Shift+M; change in Settings.")

    def voice_lag(self, text: str) -> None:
        self.fields["voice"].setText(text)
