"""Pick a synthesizer by name, falling back to espeak-ng with a message the caller can show."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

from tts.synth import NullSynth, SpeechError, Synthesizer

LOG = logging.getLogger(__name__)


class SynthKind(str, enum.Enum):
    CHATTTS = "chattts"
    ESPEAK = "espeak"
    NULL = "none"

    @classmethod
    def parse(cls, name: str) -> "SynthKind":
        try:
            return cls(name.lower())
        except ValueError:
            raise SpeechError(f"unknown speech engine {name!r}: use one of "
                              f"{', '.join(k.value for k in cls)}") from None


@dataclass(frozen=True)
class SynthChoice:
    """The synthesizer to use and, when it is a fallback, a one-line warning to show and its cause."""

    synth: Synthesizer
    warning: str | None = None
    error: SpeechError | None = None  # why ChatTTS could not be used


def parse_voice(voice: str | None) -> tuple[SynthKind, str | None]:
    """`--voice` forms: "espeak" / "espeak:en-gb", "chattts" / "chattts:1234", "none", or a
    bare ChatTTS seed or name ("1234", "alice")."""
    if not voice:
        return SynthKind.CHATTTS, None
    kind, _, rest = voice.partition(":")
    if kind.lower() in {k.value for k in SynthKind}:
        return SynthKind.parse(kind), rest or None
    return SynthKind.CHATTTS, voice


def make_synthesizer(kind: SynthKind | str = SynthKind.CHATTTS, voice: str | None = None,
                     device: str = "auto", asset_dir: Path | None = None,
                     fallback: bool = True) -> SynthChoice:
    """ChatTTS, espeak-ng or silence. ChatTTS that cannot load falls back to espeak-ng."""
    kind = SynthKind.parse(kind) if isinstance(kind, str) else kind
    if kind is SynthKind.NULL:
        return SynthChoice(NullSynth())
    if kind is SynthKind.ESPEAK:
        from tts.espeak import EspeakSynth

        return SynthChoice(EspeakSynth(voice))
    try:
        from tts.chattts_synth import ChatTTSOptions, ChatTTSSynth

        return SynthChoice(ChatTTSSynth(ChatTTSOptions(voice=voice or "", device=device, asset_dir=asset_dir)))
    except SpeechError as error:
        if not fallback:
            raise
        from tts.espeak import EspeakSynth

        message = f"ChatTTS unavailable ({error}); speaking with espeak-ng instead"
        LOG.info("%s", message)  # the caller shows choice.warning
        return SynthChoice(EspeakSynth(), warning=message, error=error)
