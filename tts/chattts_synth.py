"""ChatTTS (2noise/ChatTTS, PyPI `chattts` 0.2.x) behind the `Synthesizer` interface.

Weights: fetched by ChatTTS itself from huggingface.co/2Noise/ChatTTS on first use (its own
progress bars), or read from a local asset folder. Licence: code AGPL-3.0, weights CC BY-NC 4.0.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine import flags
from engine.runtime import CAPTURE_LOCK
from tts.synth import SpeechError, Synthesizer, as_mono_float32

LOG = logging.getLogger(__name__)
SAMPLE_RATE = 24000  # Vocos in ChatTTS decodes 24 kHz audio
DEFAULT_VOICE = "2222"  # a fixed speaker seed; any integer or name selects another
HF_REPO = "2Noise/ChatTTS"
WARM_TEXT = "warm up."


def _fast_start() -> bool:
    """LIVECC_TTS_NO_FAST_START=1: ChatTTS' own start (skip 2 pieces of 24 tokens, no warm-up)."""
    return not flags.get("LIVECC_TTS_NO_FAST_START")


def _side_stream() -> bool:
    """LIVECC_TTS_NO_SIDE_STREAM=1: speech runs on the default CUDA stream."""
    return not flags.get("LIVECC_TTS_NO_SIDE_STREAM")


def _cuda_graph() -> bool:
    """LIVECC_TTS_NO_CUDA_GRAPH=1: ChatTTS' own eager code-token decode (a Python loop per token)."""
    return not flags.get("LIVECC_TTS_NO_CUDA_GRAPH")


@dataclass(frozen=True)
class ChatTTSOptions:
    """How ChatTTS is loaded and run. Defaults favour latency over expressiveness."""

    voice: str = DEFAULT_VOICE  # integer seed, or any name (hashed to a stable seed)
    device: str = "auto"  # "auto" = CUDA when available, else CPU
    asset_dir: Path | None = None  # local folder holding asset/...; None = ChatTTS' HF download
    refine_text: bool = False  # ChatTTS' text refinement: a second LLM pass, slow
    stream: bool = True  # infer(stream=True): pieces before the sentence is done
    temperature: float = 0.3
    top_p: float = 0.7
    top_k: int = 20
    tokens_per_char: float = 6.0  # code tokens (~21 ms each) allowed per character: a runaway guard
    token_floor: int = 24
    min_token_fraction: float = 0.0  # force at least this fraction of the budget (1.0: exact length)
    # fast start: the first audio after 12 code tokens (~0.26 s of speech) instead of 3 x 24
    stream_batch: int = field(default_factory=lambda: 12 if _fast_start() else 24)  # tokens per streamed piece
    pass_first_n_batches: int = field(default_factory=lambda: 0 if _fast_start() else 2)  # pieces skipped first
    warm_up: bool = field(default_factory=_fast_start)  # one short synthesis at load: kernels, allocator
    side_stream: bool = field(default_factory=_side_stream)  # CUDA: own stream, below the engine's decode
    cuda_graph: bool = field(default_factory=_cuda_graph)  # CUDA: each code token is one graph replay
    sampling_seed: int | None = None  # None: sample freely; an int: reproducible audio
    compile: bool = False

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SpeechError(f"unknown speech device {self.device!r}: use auto, cpu or cuda[:N]")
        if self.tokens_per_char <= 0 or not 0.0 <= self.min_token_fraction <= 1.0:
            raise SpeechError("tokens_per_char must be > 0 and min_token_fraction in [0, 1]")


def voice_seed(voice: str | int | None) -> int:
    """An integer (or digit string) is the seed itself; any other name hashes to a stable seed."""
    if voice is None or voice == "":
        voice = DEFAULT_VOICE
    text = str(voice).strip()
    return int(text) if text.isdigit() else zlib.crc32(text.encode("utf-8")) % 100_000


def _torch_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpeechError("speech device cuda was asked for but no CUDA GPU is visible: use device 'auto' or 'cpu'")
    return torch.device(name)


def import_chattts():
    """Import ChatTTS or raise a SpeechError that names the install command."""
    try:
        import ChatTTS
    except ImportError as error:
        raise SpeechError(f"ChatTTS is not installed ({error}): run `python -m tts.install`") from error
    return ChatTTS


class ChatTTSSynth(Synthesizer):
    """ChatTTS with a fixed, seeded speaker; text refinement off; streamed pieces."""

    name = "chattts"
    sample_rate = SAMPLE_RATE

    def __init__(self, options: ChatTTSOptions | None = None, config=None) -> None:
        """`options`: None = the defaults, with the environment's switches read now.
        `config`: a `ChatTTS.config.Config` matching `asset_dir` (random test assets)."""
        options = options or ChatTTSOptions()
        self.options = options
        self._chattts = import_chattts()
        self.device = _torch_device(options.device)
        self.chat = self._chattts.Chat(logging.getLogger("ChatTTS"))
        if config is not None:
            self.chat.config = config
        self._load()
        self.code_generator = None
        self._route_code_decode()
        self.speaker = self._speaker_embedding(voice_seed(options.voice))
        self._cuda_stream = self._make_stream()
        # the graph is captured by the first synthesis: do it at load, not in the middle of a stream
        # (a capture holds the default CUDA generator, which an engine sampling at temperature > 0
        # draws from), also when the fast start's warm-up is switched off
        if (options.warm_up or self.code_generator is not None) and self.device.type == "cuda":
            self.synthesize(WARM_TEXT)

    def set_options(self, options: ChatTTSOptions) -> None:
        """New run-time options (levers, lengths) for the loaded model; voice, device and assets stay.
        Call it only while nothing synthesizes (no SpeechPlayer running on this synthesizer): the
        options and the stream are swapped without a lock."""
        self.options = options
        self._cuda_stream = self._make_stream()
        self._route_code_decode()

    def _route_code_decode(self) -> None:
        """Code tokens from the graphed generator (it hands what it cannot run to ChatTTS' own
        generate, a CPU included), or from ChatTTS' generate alone (the off switch)."""
        if self.options.cuda_graph and self.code_generator is None:
            from tts.chattts_graph import install_code_generator  # torch: imported where used

            self.code_generator = install_code_generator(self.chat)
        elif not self.options.cuda_graph and self.code_generator is not None:
            self.code_generator.uninstall()
            self.code_generator = None

    def _make_stream(self):
        """A CUDA stream at CUDA's lowest priority (0). With the engine's chunk overlap on, its decode
        runs at priority -5 and goes first; with LIVECC_NO_OVERLAP=1 it decodes on the default
        stream, at the same priority as this one."""
        import torch

        if not (self.options.side_stream and self.device.type == "cuda"):
            return None
        stream = torch.cuda.Stream(self.device, priority=0)
        stream.wait_stream(torch.cuda.current_stream(self.device))  # the weights loaded there first
        return stream

    def _on_gpu(self):
        """Where speech's GPU work runs: its own stream, or the caller's (the off switch)."""
        import torch

        return torch.cuda.stream(self._cuda_stream) if self._cuda_stream is not None else contextlib.nullcontext()

    def _load(self) -> None:
        if self.options.asset_dir is not None:
            ok = self._load_local(Path(self.options.asset_dir))
        else:
            LOG.info("ChatTTS: fetching weights from huggingface.co/%s on first use", HF_REPO)
            ok = self.chat.load(source="huggingface", device=self.device, compile=self.options.compile)
        if not ok:
            where = self.options.asset_dir or f"huggingface.co/{HF_REPO}"
            raise SpeechError(f"ChatTTS weights could not be loaded from {where}", code="voice",
                              fix="check the network or pass a local folder with --speech-assets")

    def _load_local(self, root: Path) -> bool:
        """Load `root/asset/...` without ChatTTS' checksum step (which only knows the release)."""
        paths = {k: root / v for k, v in asdict(self.chat.config.path).items()}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise SpeechError(f"ChatTTS asset folder {root} lacks {missing[0]}: point it at a "
                              "folder that holds asset/ as ChatTTS lays it out")
        paths = {k: str(p) for k, p in paths.items()}
        return self.chat._load(device=self.device, compile=self.options.compile, **paths)

    def _speaker_embedding(self, seed: int) -> str:
        """ChatTTS' own random-speaker draw, from a private generator so it is reproducible."""
        import torch

        speaker = self.chat.speaker
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(speaker.dim, generator=generator).to(speaker.std.dtype)
        emb = noise.to(speaker.std.device).mul_(speaker.std).add_(speaker.mean)
        return speaker._encode(emb)

    def token_budget(self, text: str) -> tuple[int, int]:
        """(min, max) new code tokens for `text`: bounds a runaway generation."""
        upper = int(self.options.token_floor + self.options.tokens_per_char * len(text))
        return int(self.options.min_token_fraction * upper), upper

    def _params(self, text: str):
        low, high = self.token_budget(text)
        o = self.options
        return self._chattts.Chat.InferCodeParams(
            spk_emb=self.speaker, temperature=o.temperature, top_P=o.top_p, top_K=o.top_k,
            max_new_token=high, min_new_token=low, stream_batch=o.stream_batch,
            pass_first_n_batches=o.pass_first_n_batches, manual_seed=o.sampling_seed,
            show_tqdm=False)

    def _infer(self, text: str, stream: bool):
        return self.chat.infer([text], stream=stream, skip_refine_text=not self.options.refine_text,
                               split_text=False, params_infer_code=self._params(text))

    def synthesize(self, text: str) -> np.ndarray:
        text = text.strip()
        if not text:
            return np.zeros(0, dtype=np.float32)
        with CAPTURE_LOCK, self._on_gpu():  # never sample on the GPU while the engine captures a graph
            wavs = self._infer(text, stream=False)
        return as_mono_float32(wavs[0]) if len(wavs) else np.zeros(0, dtype=np.float32)

    def stream(self, text: str) -> Iterator[np.ndarray]:
        text = text.strip()
        if not text:
            return
        if not self.options.stream:
            yield from super().stream(text)
            return
        pieces = self._infer(text, stream=True)
        while True:
            with CAPTURE_LOCK, self._on_gpu():  # samples on the GPU: not while the engine captures a graph
                piece = next(pieces, None)
            if piece is None:
                return
            audio = as_mono_float32(piece[0]) if len(piece) else np.zeros(0, dtype=np.float32)
            if audio.size:
                yield audio

    def interrupt(self) -> None:
        self.chat.interrupt()  # ChatTTS checks this flag between decode steps

    def close(self) -> None:
        if self.code_generator is not None:  # its static cache and graphs go with the model
            self.code_generator.uninstall()
            self.code_generator = None
        if hasattr(self.chat, "gpt"):
            self.chat.unload()
