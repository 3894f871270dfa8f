"""Where the model and the ChatTTS voice come from, decided before anything touches the network: a
first start asks before downloading (the default model is about 16 GB), and so does turning Speak
on with ChatTTS; a local folder never downloads.
The Hugging Face cache is huggingface_hub's own (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME), read
through its API without the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.defaults import DEFAULT_MODEL
from engine.model.hub import is_hub_id

DEFAULT_MODEL_GB = 16  # LiveCC-7B-Instruct in bf16: 4 safetensors shards
CHATTTS_REPO = "2Noise/ChatTTS"  # tts.chattts_synth.HF_REPO, which imports numpy and the runtime


def hub_cache() -> Path:
    from huggingface_hub import constants  # imported when asked, not with the window

    return Path(constants.HF_HUB_CACHE)


def needs_download(name: str) -> bool:
    """True for a Hugging Face id that is not in the local cache yet (a local folder never is)."""
    if not is_hub_id(name):
        return False
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub id after all: the load names the problem
        return False
    return not isinstance(cached, str)


def download_question(name: str) -> str:
    size = f"about {DEFAULT_MODEL_GB} GB" if name == DEFAULT_MODEL else "several GB"
    return (f"LiveCC needs its model, {name}: {size}, downloaded once from Hugging Face (huggingface.co) into "
            f"{hub_cache()}. Nothing is downloaded until you agree; a local model folder works without it.")


def speech_needs_download(voice: str) -> bool:
    """True when Speak with this voice would fetch ChatTTS' weights: ChatTTS is installed (else
    espeak-ng speaks, nothing is fetched) and huggingface_hub's cache has no snapshot of it."""
    from tts.factory import SynthKind, parse_voice

    if parse_voice(voice)[0] is not SynthKind.CHATTTS or importlib.util.find_spec("ChatTTS") is None:
        return False
    snapshots = hub_cache() / f"models--{CHATTTS_REPO.replace('/', '--')}" / "snapshots"
    return not (snapshots.is_dir() and any(snapshots.iterdir()))


def speech_download_question() -> str:
    return (f"Speak uses the ChatTTS voice: its weights ({CHATTTS_REPO}) are downloaded once from Hugging Face "
            f"(huggingface.co) into {hub_cache()}. Nothing is downloaded until you agree; espeak-ng speaks "
            "without it.")
