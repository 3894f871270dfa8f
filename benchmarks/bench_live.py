"""Glass-to-voice latency, live: a paced 1080p source, the engine and speech on one device.

    python benchmarks/bench_live.py [--phases warm:8,base:180,on:180] [--out DIR]
    python benchmarks/bench_live.py --smoke            # CPU: tiny model, espeak-ng (or silence), seconds

No download: the LiveCC-7B architecture with random bf16 weights (bench_engine.build_random) and
ChatTTS at its released size with random weights (tts.chattts_assets), both on the GPU. A
synthetic 1080p 30 fps source is paced in real time like a webcam (live session: it skips ahead
when behind). The SpeechPlayer's own audio callback is called by a thread at the device's real
rate (24 kHz, 1024-sample blocks): ALSA's null device, the other choice (--audio alsa-null), takes
audio about 2000 times faster than real time, so it cannot time playback, and the GPU machine
has no libportaudio2.

Random weights write noise, so each comment's text is taken from a scripted commentary (about
2.5 words a second, a quarter of the chunks silent, as LiveCC's real commentary runs) while the
engine still decodes its 16 tokens per chunk; ChatTTS is forced to a natural length for the text
(3.3 code tokens a character, as bench_tts.py). Measured per comment, from the capture time of its
chunk's last frame: the Commentary event (caption) and the first sample of its phrase entering the
audio callback (voice; for a phrase of several comments, from its oldest comment). Phases:
`warm` (discarded: graph capture), `base` (no speech), `off` (speech, every latency lever off:
the old behaviour), `on` (speech, the defaults), `on-LEVER` (the defaults with one lever off).
Each phase is a new session from an empty context, so phases of equal length compare like for like.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_engine import build_random, device_label, pct, write_outputs  # noqa: E402
from engine.capture.frames import Frame, RingBuffer  # noqa: E402
from engine.session.events import Commentary, Stats  # noqa: E402
from engine.session.session import SessionConfig, StreamingSession  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PERIOD = 0.5  # the engine samples 2 fps: a chunk's last frame is half a second before its end
# Each latency lever's off switch: phase `on-LEVER` turns one off, phase `off` all of them (the
# speech behaviour before issue 13).
LEVERS = {"clause": {"LIVECC_SPEECH_START": "sentence"}, "queue": {"LIVECC_SPEECH_MAX_PENDING": "8"},
          "catchup": {"LIVECC_SPEECH_MAX_RATE": "1"}, "faststart": {"LIVECC_TTS_NO_FAST_START": "1"},
          "sidestream": {"LIVECC_TTS_NO_SIDE_STREAM": "1"}, "graph": {"LIVECC_TTS_NO_CUDA_GRAPH": "1"}}
LEVERS_OFF = {k: v for switch in LEVERS.values() for k, v in switch.items()}
SCRIPT = [  # one entry per 1-second chunk; "" = the model stays silent
    "Welcome back to the second half,", "the home side kicking off", "from left to right.", "",
    "Nice early pressure", "from the number nine", "", "who wins it back in midfield.",
    "He looks up,", "plays it wide", "to the overlapping full back.", "", "The cross comes in",
    "and it is cleared", "away for a corner.", "", "", "Everyone up for this one,",
    "the keeper is crowded", "on his line.", "In it swings", "and it is headed over the bar.", "",
    "A good chance that,", "he really should", "have hit the target.", "", "Goal kick then,",
    "taken short", "to the centre half", "who carries it forward.", "", "Lovely turn", "in the middle",
    "of the park,", "and now they break", "three against two", "he shoots", "and it is a great save!", "",
]


@dataclass
class PacedSource:
    """Synthetic 1080p frames put into the ring buffer at their capture time, in real time."""

    seconds: float
    images: list[np.ndarray]
    fps: float = 30.0
    captured: dict[int, float] = field(default_factory=dict)  # frame index -> monotonic put time
    start_time: float = 0.0

    def start(self, buffer: RingBuffer) -> "PacedSource":
        self.start_time = time.monotonic()
        threading.Thread(target=self._run, args=(buffer,), daemon=True).start()
        return self

    def _run(self, buffer: RingBuffer) -> None:
        for i in range(int(self.seconds * self.fps)):
            delay = self.start_time + i / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.captured[i] = time.monotonic()
            buffer.put(Frame(self.images[i % len(self.images)], i / self.fps))  # a full buffer drops its oldest
        buffer.close()

    def capture_time(self, video_time: float) -> float:
        """When the frame on screen at `video_time` was captured (the last frame, for a chunk that
        runs past the end of the source)."""
        return self.captured[min(int(round(video_time * self.fps)), max(self.captured))]


class PacedOutput:
    """Calls the player's audio callback at the device's real rate (no PortAudio needed)."""

    def __init__(self, player) -> None:
        self.player, self._stop = player, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        frames, rate = self.player.config.block_size, self.player.synth.sample_rate
        out = np.zeros((frames, 1), dtype=np.float32)
        due = time.monotonic()
        while not self._stop.is_set():
            self.player._callback(out, frames, None, 0)
            due += frames / rate
            self._stop.wait(max(0.0, due - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2.0)


# -- the rig ---------------------------------------------------------------------------------
@dataclass
class Rig:
    loaded: object
    runner: object
    synth: object | None
    audio: str  # "alsa-null" | "paced"
    config: SessionConfig
    images: list[np.ndarray]


def open_audio(mode: str) -> str:
    """'paced' (the player's callback driven at the device rate), or 'alsa-null': a real PortAudio
    stream into ALSA's null sink (a private .asoundrc), which takes audio as fast as it is given."""
    if mode == "paced":
        return mode
    from conftest import ASOUNDRC

    home = Path(tempfile.mkdtemp(prefix="livecc-null-audio-"))
    (home / ".asoundrc").write_text(ASOUNDRC)
    os.environ["HOME"] = str(home)
    import sounddevice as sd  # needs libportaudio2

    sd.query_devices("default", kind="output")
    return mode


def build_rig(smoke: bool, voice: str, audio: str) -> Rig:
    from videos import synthetic_frame

    if smoke:
        from engine.model.loading import load_model
        from engine.model.tiny import make_tiny_model

        loaded = load_model(str(make_tiny_model(Path(tempfile.mkdtemp()) / "tiny")), device="cpu")
        size = (180, 320)
    else:
        import torch

        loaded = build_random("7b", torch.bfloat16, "cuda")
        size = (1080, 1920)
    config = SessionConfig(ignore_eos=True, max_new_tokens=16, live=True)
    session = StreamingSession(loaded, config)
    images = [synthetic_frame(t * 0.37, size[1], size[0]) for t in range(16)]
    return Rig(loaded, session.runner, build_synth(voice, smoke), open_audio(audio), config, images)


def build_synth(voice: str, smoke: bool):
    """ChatTTS at its released size with random weights (full runs), espeak-ng or silence."""
    from tts.factory import make_synthesizer
    from tts.synth import NullSynth

    if voice == "none":
        return NullSynth(sample_rate=24000, seconds_per_char=0.07)  # silence of a speaking length
    if voice == "espeak":
        return make_synthesizer("espeak", fallback=False).synth
    from tts.chattts_assets import build_random_assets
    from tts.chattts_synth import ChatTTSSynth

    assets = build_random_assets(Path(tempfile.mkdtemp()), scale="tiny" if smoke else "full")
    return ChatTTSSynth(chattts_options(assets.root, smoke), config=assets.config)


def chattts_options(root: Path, smoke: bool):
    """Defaults of this phase's environment (the levers), forced to a natural speaking length."""
    from tts.chattts_synth import ChatTTSOptions

    return ChatTTSOptions(asset_dir=root, device="cpu" if smoke else "cuda", tokens_per_char=3.3, token_floor=4,
                          min_token_fraction=1.0, sampling_seed=0)


# -- one phase -------------------------------------------------------------------------------
@dataclass
class Comment:
    index: int
    start: float
    end: float
    text: str
    captured: float  # monotonic capture time of the chunk's last frame
    caption: float  # monotonic time of the Commentary event


def phase_switches(name: str) -> dict[str, str]:
    """The environment a phase runs in: `off` every lever off, `on-LEVER` that one."""
    if name == "off":
        return LEVERS_OFF
    return LEVERS[name.removeprefix("on-")] if name.startswith("on-") else {}


def catch_up_policy(name: str):
    """`on@RATE` or `on@RATExHORIZON`: the defaults with catch-up's fastest rate (and horizon, s) set."""
    from tts.scheduler import SpeechPolicy

    if not name.startswith("on@"):
        return None
    rate, _, horizon = name.removeprefix("on@").partition("x")
    policy = SpeechPolicy(max_rate=float(rate))
    return replace(policy, catch_up_horizon_s=float(horizon)) if horizon else policy


def run_phase(rig: Rig, name: str, seconds: float) -> dict:
    speak = name == "off" or name.startswith("on")
    saved = {k: os.environ.get(k) for k in LEVERS_OFF}
    os.environ.update(phase_switches(name))
    try:
        player = start_player(rig, catch_up_policy(name)) if speak else None
        comments, stats, output = stream(rig, seconds, player)
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for k in (k for k, v in saved.items() if v is None):
            os.environ.pop(k, None)
    report = {"phase": name, "seconds": seconds, "engine": engine_summary(stats)}
    report["caption_s"] = distribution([c.caption - c.captured for c in comments])
    if player is not None:
        player.drain(8.0)
        player.stop()
        if output is not None:
            output.close()
        report |= speech_summary(player, comments)
    return report


def start_player(rig: Rig, policy=None):
    from tts.player import PlayerConfig, SpeechPlayer

    if hasattr(rig.synth, "set_options"):  # this phase's levers, read from the environment
        rig.synth.set_options(chattts_options(rig.synth.options.asset_dir, rig.loaded.device.type == "cpu"))
    config = PlayerConfig(device="default" if rig.audio == "alsa-null" else None, live=True, history=100_000,
                          **({"policy": policy} if policy is not None else {}))
    player = SpeechPlayer(rig.synth, config, clock=time.monotonic)
    return player.start(open_device=rig.audio == "alsa-null")


def stream(rig: Rig, seconds: float, player) -> tuple[list[Comment], list[Stats], PacedOutput | None]:
    session = StreamingSession(rig.loaded, rig.config, runner=rig.runner)
    buffer = RingBuffer(64)
    output = PacedOutput(player) if player is not None and player._stream is None else None
    if output is not None:
        output.thread.start()
    source = PacedSource(seconds, rig.images).start(buffer)
    comments, stats = [], []
    for event in session.run(buffer):
        if isinstance(event, Commentary):
            now = time.monotonic()
            text = SCRIPT[event.chunk_index % len(SCRIPT)]
            comments.append(Comment(event.chunk_index, event.start, event.end, text,
                                    source.capture_time(event.end - PERIOD), now))
            if player is not None:
                player.say_commentary(text, event.start, event.end)
        elif isinstance(event, Stats):
            stats.append(event)
            if player is not None:
                player.set_video_time(event.end)
    return comments, stats, output


# -- numbers ---------------------------------------------------------------------------------
def distribution(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(pct(values, 50), 4), "p95": round(pct(values, 95), 4),
            "max": round(float(max(values)), 4)}


def engine_summary(stats: list[Stats]) -> dict:
    steady = stats[1:]  # the 3-second first chunk is a one-off
    return {"chunks": len(stats), "chunk_ms": distribution([s.total_ms for s in steady]),
            "skipped_chunks": stats[-1].chunks_skipped if stats else 0,
            "lag_ms": distribution([s.lag_ms for s in steady])}


def speech_summary(player, comments: list[Comment]) -> dict:
    """Each spoken comment's first audio, from the phrase that carried it; the rest were dropped."""
    from tts.scheduler import Kind

    starts = [s for s in player.started if s.phrase.kind is Kind.COMMENTARY]
    said = [c for c in comments if c.text.strip()]
    first_audio, oldest, dropped = [], [], 0
    for c in said:
        start = next((s for s in starts if s.phrase.video_start <= c.start and c.end <= s.phrase.video_end), None)
        if start is None:
            dropped += 1
            continue
        first_audio.append(start.clock - c.captured)
        if c.end == start.phrase.due:
            oldest.append(start.clock - c.captured)
    sched, policy = player.scheduler.stats, player.config.policy
    return {"policy": {k: getattr(policy, k) for k in ("start_at", "min_words", "max_pending", "max_lag_s", "max_rate",
                                                         "catch_up_horizon_s")},
            "comments": len(said), "phrases": len(starts), "dropped": dropped,
            "dropped_fraction": round(dropped / max(1, len(said)), 4),
            "first_audio_s": distribution(oldest), "first_audio_per_comment_s": distribution(first_audio),
            "dropped_stale": sched.dropped_stale + player.stats.stale_dropped,
            "dropped_overflow": sched.dropped_overflow, "merged": sched.merged,
            "underruns": player.stats.underruns, "sped_up_pieces": player.stats.sped_up_pieces,
            "fastest_rate": round(player.stats.fastest_rate, 3), "mean_rate": round(player.stats.mean_rate, 3),
            "fast_share": round(player.stats.fast_share, 4), "speech_said_s": round(player.stats.said_s, 2),
            "synth_error": player._error}


# -- main ------------------------------------------------------------------------------------
def parse_phases(text: str) -> list[tuple[str, float]]:
    phases = []
    for part in text.split(","):
        name, _, seconds = part.partition(":")
        known = ("warm", "base", "off", "on", *(f"on-{lever}" for lever in LEVERS))
        try:
            catch_up_policy(name)
        except ValueError:
            name = "bad"
        if (name not in known and not name.startswith("on@")) or not seconds:
            raise SystemExit(f"bench_live: bad phase {part!r}: use {'|'.join(known)}|on@RATE[xHORIZON]:SECONDS, "
                             "comma-separated")
        phases.append((name, float(seconds)))
    return phases


def spread(d: dict, digits: int, with_max: bool = True) -> str:
    """'p50 / p95 / max' of a distribution, or a dash when it is empty."""
    if not d.get("n"):
        return "–"
    keys = ("p50", "p95", "max") if with_max else ("p50", "p95")
    return " / ".join(f"{d[k]:.{digits}f}" for k in keys)


def catch_up(phase: dict) -> str:
    if "sped_up_pieces" not in phase:
        return "– | – | –"
    return (f"{phase['sped_up_pieces']} ({phase['fastest_rate']:.2f}x) | {phase['mean_rate']:.3f}x "
            f"| {phase['fast_share']:.0%}")


def markdown(result: dict) -> str:
    lines = [f"Live glass-to-voice latency: {result['device']}, {result['date']}, {result['model']}, voice "
             f"{result['voice']}, audio {result['audio']}, seconds from the capture of a chunk's last frame.", "",
             "| phase | video (s) | caption p50 / p95 / max | first audio p50 / p95 / max | dropped | "
             "chunk ms p50 / p95 | chunks skipped | pieces sped up (fastest) | mean rate | heard > 1.25x |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in result["phases"]:
        if p["phase"] == "warm":
            continue
        drops = f"{p['dropped']} of {p['comments']} ({p['dropped_fraction']:.0%})" if "dropped" in p else "–"
        lines.append(f"| {p['phase']} | {p['seconds']:.0f} | {spread(p['caption_s'], 3)} "
                     f"| {spread(p.get('first_audio_s', {}), 2)} | {drops} | {spread(p['engine']['chunk_ms'], 1, False)} "
                     f"| {p['engine']['skipped_chunks']} | {catch_up(p)} |")
    if "chunk_p95_ratio" in result:
        lines += ["", f"Engine chunk p95 with speech (levers on) / without: {result['chunk_p95_ratio']:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="warm:8,base:180,on:180",
                    help="comma-separated NAME:SECONDS; NAME: warm (discarded), base (no speech), on (defaults), "
                         "off (every lever off), on-LEVER (one lever off: " + ", ".join(LEVERS) + "), "
                         "on@RATE[xHORIZON] (catch-up at most RATE, over HORIZON s)")
    ap.add_argument("--voice", choices=("chattts", "espeak", "none"), default="chattts")
    ap.add_argument("--audio", choices=("paced", "alsa-null"), default="paced",
                    help="paced (default): the player's callback at the device rate; alsa-null: real PortAudio "
                         "into ALSA's null sink, which does not keep time (about 2000x real rate here)")
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny model, small frames, short phases")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    phases = parse_phases("warm:4,base:6,off:6,on:8" if args.smoke and args.phases == ap.get_default("phases")
                          else args.phases)
    rig = build_rig(args.smoke, args.voice, args.audio)
    result = {"benchmark": "live", "date": dt.date.today().isoformat(), "device": device_label(rig.loaded.device),
              "model": getattr(rig.loaded, "name", "model"), "voice": getattr(rig.synth, "name", "?"),
              "audio": rig.audio, "smoke": args.smoke, "phases": []}
    for name, seconds in phases:
        result["phases"].append(run_phase(rig, name, seconds))
        print(json.dumps(result["phases"][-1]), flush=True)
        write(result, args.out)  # after every phase: a later failure keeps what was measured
    by_name = {p["phase"]: p for p in result["phases"]}
    if "base" in by_name and "on" in by_name:
        on, base = by_name["on"]["engine"]["chunk_ms"], by_name["base"]["engine"]["chunk_ms"]
        if on.get("n") and base.get("n"):
            result["chunk_p95_ratio"] = on["p95"] / base["p95"]
    write(result, args.out)
    print(markdown(result))
    return 0


def write(result: dict, out: Path) -> None:
    stem = f"live_{result['date']}_{result['device'].replace(' ', '-')}" + ("_smoke" if result["smoke"] else "")
    write_outputs(out, {f"{stem}.json": json.dumps(result, indent=1), f"{stem}.md": markdown(result)})


if __name__ == "__main__":
    sys.exit(main())
