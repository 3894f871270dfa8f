"""Speech for LiveCC Desktop (Qt-free): synthesizers, the speaking policy, the player.

    from tts import make_synthesizer, SpeechPlayer, PlayerConfig
    choice = make_synthesizer("chattts", voice="2222")   # falls back to espeak-ng
    player = SpeechPlayer(choice.synth, PlayerConfig(device=None)).start()
    player.say_commentary(text, video_start, video_end); player.say_answer(text, done)
    player.set_video_time(t); player.mute(True); player.state; player.stop()

Heavy imports (ChatTTS, torch, sounddevice) happen only where they are used.
"""

from tts.factory import SynthChoice, SynthKind, make_synthesizer, parse_voice
from tts.player import PlayerConfig, SpeechPlayer, resolve_output_device
from tts.scheduler import Kind, Phrase, SpeechPolicy, SpeechScheduler
from tts.synth import NullSynth, SpeechError, Synthesizer
from tts.timeline import SpeechTimeline

__all__ = [
    "Kind", "NullSynth", "Phrase", "PlayerConfig", "SpeechError", "SpeechPlayer", "SpeechPolicy",
    "SpeechScheduler", "SpeechTimeline", "SynthChoice", "SynthKind", "Synthesizer",
    "make_synthesizer", "parse_voice", "resolve_output_device",
]
