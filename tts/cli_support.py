"""Speech for `livecc narrate`: the flags, and a sink that consumes the engine's events.

livecc/cli/options.py calls `add_speech_arguments(parser)` and, when --speak or --speech-wav is given,
`speech_sink_from_args(args)`; it then passes every event to `sink.on_event` and calls
`sink.close()` at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine import Answer, Commentary, Stats
from tts.factory import SynthKind, make_synthesizer, parse_voice
from tts.player import PlayerConfig, SpeechPlayer, resolve_output_device
from tts.received import ReceivedAudio, ReceivedVoice, play_received
from tts.scheduler import SpeechPolicy, policy_with_max_lag
from tts.synth import NullSynth, SpeechError, Synthesizer
from tts.timeline import SpeechTimeline

DRAIN_TIMEOUT_S = 10.0  # at the end, let the last phrase finish, but not forever


def add_speech_arguments(parser: argparse.ArgumentParser, file_type: Callable[[str], Path] = Path) -> None:
    """The speech flags; `file_type` parses --speech-wav (the CLI's check of an output file name)."""
    g = parser.add_argument_group("speech")
    g.add_argument("--speak", action="store_true",
                   help="speak the commentary (ChatTTS; espeak-ng when ChatTTS cannot load; with --server: the "
                        "server's voice)")
    g.add_argument("--voice", default=None,
                   help='ChatTTS speaker seed or name ("2222", "alice"), "chattts:SEED", '
                        '"espeak" or "espeak:VOICE" (e.g. espeak:en-gb), or "none" (default: ChatTTS seed 2222)')
    g.add_argument("--audio-device", default=None,
                   help="output device index or name (see `python -m sounddevice`; default: the system default)")
    g.add_argument("--speech-wav", type=file_type, default=None, metavar="F",
                   help="write what would be spoken to this WAV, aligned to video time")
    g.add_argument("--speech-assets", type=Path, default=None, metavar="DIR",
                   help="local ChatTTS folder holding asset/ (default: download from Hugging Face on first use)")
    g.add_argument("--speech-max-lag", type=float, default=SpeechPolicy.max_lag_s, metavar="S",
                   help="drop comments whose speech would start more than S seconds behind the video (default %(default)s)")


def parse_device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.strip().isdigit() else value


@dataclass
class SpeechSink:
    """Feeds a live player and/or records commentary for an offline WAV."""

    synth: Synthesizer
    player: SpeechPlayer | None = None
    wav_path: Path | None = None
    policy: SpeechPolicy = field(default_factory=SpeechPolicy)
    commentary: list[Commentary] = field(default_factory=list)
    video_duration: float = 0.0  # the WAV is exactly this long (0, a live source: as long as its speech)
    written: Path | None = None  # the WAV, once it is on disk

    def on_event(self, event) -> None:
        if isinstance(event, Commentary) and self.wav_path is not None:
            self.commentary.append(event)
        if self.player is None:
            return
        if isinstance(event, ReceivedAudio):
            play_received(self.player, event)
        elif isinstance(event, Stats):
            self.player.set_video_time(event.end)
        elif isinstance(self.player.synth, ReceivedVoice):
            return  # a server's voice says the text: its audio comes as ReceivedAudio
        elif isinstance(event, Commentary):
            self.player.say_commentary(event.text, event.start, event.end)
        elif isinstance(event, Answer):
            self.player.say_answer(event.text, event.done, key=(event.question, event.time))

    def close(self) -> None:
        if self.player is not None:
            self.player.drain(DRAIN_TIMEOUT_S)
            self.player.stop()
        if self.wav_path is not None:
            self._write_wav()  # after the player stopped: one synthesizer, one thread
        self.synth.close()

    def _write_wav(self) -> None:
        timeline = SpeechTimeline(self.synth, self.policy)
        for event in self.commentary:
            timeline.add_commentary(event.text, event.start, event.end)
        timeline.write(self.wav_path, self.video_duration)  # cut at the video's end only when it is known
        self.written = self.wav_path
        print(f"speech: wrote {self.wav_path} ({self._wav_contents(timeline)})", file=sys.stderr)

    def _wav_contents(self, timeline: SpeechTimeline) -> str:
        if isinstance(self.synth, NullSynth):
            return "silent: --voice none says nothing; give --voice espeak or a ChatTTS seed to hear it"
        dropped = timeline.scheduler.stats.dropped_stale + timeline.scheduler.stats.dropped_overflow
        said = f"{len(timeline.placements)} phrases"
        return said if not dropped else (f"{said}; {dropped} dropped, which would have started more than "
                                         f"{self.policy.max_lag_s:g} s behind the video (--speech-max-lag)")


def speech_policy(max_lag_s: float) -> SpeechPolicy:
    """The policy for --speech-max-lag over the environment's switches (a bad one: FlagError naming it)."""
    base = SpeechPolicy()  # reads LIVECC_SPEECH_START and LIVECC_SPEECH_MAX_PENDING
    try:
        return policy_with_max_lag(max_lag_s, base)
    except ValueError as error:
        raise SpeechError(f"bad --speech-max-lag: {error}") from error


def speech_sink_from_args(args: argparse.Namespace, video_duration: float = 0.0, received: bool = False) -> SpeechSink:
    """Build the synthesizer (with its fallback message) and, for --speak, start the player. The
    speech flags, the environment's switches and the audio device are checked first: no one waits
    for ChatTTS to load to learn there is no sound card. `--voice none` speaks nothing, so it needs
    no device. `received` (--server): --speak plays the server's voice, and a synthesizer is made
    here only for --speech-wav."""
    kind, voice = parse_voice(args.voice)
    speak = args.speak and kind is not SynthKind.NULL
    policy = speech_policy(args.speech_max_lag)  # before any slow step: a bad flag or switch fails at once
    if speak:
        resolve_output_device(parse_device(args.audio_device))  # SpeechError naming the fix
    synth = ReceivedVoice() if received and speak and args.speech_wav is None else _local_synth(args, kind, voice)
    player = None
    if speak:
        # `livecc narrate --speak` paces the video to wall-clock time, so playback follows it live.
        config = PlayerConfig(device=parse_device(args.audio_device), live=True, policy=policy)
        player = SpeechPlayer(ReceivedVoice() if received else synth, config).start()
    return SpeechSink(synth, player, args.speech_wav, policy, video_duration=video_duration)


def _local_synth(args: argparse.Namespace, kind: SynthKind, voice: str | None) -> Synthesizer:
    choice = make_synthesizer(kind, voice, asset_dir=args.speech_assets)  # a bad LIVECC_TTS_* switch: FlagError
    if choice.warning:
        print(f"livecc: warning: {choice.warning}", file=sys.stderr)
    return choice.synth
