"""espeak-ng (Debian package `espeak-ng`) as a light fallback voice that works everywhere."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np

from tts.synth import SpeechError, Synthesizer

DEFAULT_VOICE = "en-us"
TIMEOUT_S = 30.0


def parse_wav_stream(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM mono WAV as written to a pipe (its size fields are placeholders) -> float32."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("espeak-ng did not write a WAV file: check `espeak-ng --stdout hello`")
    pos, rate, bits = 12, 0, 16
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"fmt ":
            _, _, rate, _, _, bits = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
        elif tag == b"data":
            pcm = data[pos + 8:]  # to the end: the size field is a placeholder when piped
            pcm = pcm[: len(pcm) // 2 * 2]
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size
    raise SpeechError("espeak-ng wrote a WAV without audio data")


class EspeakSynth(Synthesizer):
    """One espeak-ng process per utterance; WAV on stdout; ~22 kHz robotic but instant."""

    name = "espeak"

    def __init__(self, voice: str | None = None, words_per_minute: int = 175) -> None:
        self.binary = shutil.which("espeak-ng")
        if self.binary is None:
            raise SpeechError("espeak-ng is not installed: `apt-get install espeak-ng` "
                              "(or run `make deps` as root), or disable speech")
        self.voice = voice or DEFAULT_VOICE
        self.words_per_minute = words_per_minute
        self.sample_rate = self._probe_rate()

    def _run(self, text: str) -> bytes:
        cmd = [self.binary, "-v", self.voice, "-s", str(self.words_per_minute), "--stdout", "--", text]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as error:
            raise SpeechError(f"espeak-ng took over {TIMEOUT_S:.0f} s: text too long?") from error
        if done.returncode != 0 or not done.stdout:
            detail = done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
            raise SpeechError(f"espeak-ng failed with voice {self.voice!r}: {detail} "
                              "(`espeak-ng --voices` lists voices)")
        return done.stdout

    def _probe_rate(self) -> int:
        """The rate depends on the voice (22050 for most); also validates the voice once."""
        return parse_wav_stream(self._run("a"))[1]

    def synthesize(self, text: str) -> np.ndarray:
        text = text.strip()
        if not text:
            return np.zeros(0, dtype=np.float32)
        audio, _ = parse_wav_stream(self._run(text))
        return audio
