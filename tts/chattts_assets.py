"""Randomly initialised ChatTTS assets, built locally: noise out, but the real loading and
inference code path. Used by the tests (tiny layer counts, CPU) and by the GPU benchmark
(`scale="full"`: the released model's sizes)."""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

# ChatTTS' own control tokens; `Speaker.decorate_*` and `Tokenizer` look these up by name.
CONTROL_TOKENS = (
    "[Stts]", "[Ptts]", "[spk_emb]", "[empty_spk]", "[Sbreak]", "[Pbreak]", "[Ebreak]",
    "[break_0]", "[break_1]", "[break_2]", "[break_3]", "[break_4]", "[break_5]", "[break_6]",
    "[uv_break]", "[v_break]", "[lbreak]", "[laugh]", "[laugh_0]", "[laugh_1]", "[laugh_2]",
    "[oral_0]", "[oral_1]", "[oral_2]", "[speed_0]", "[speed_1]", "[speed_2]", "[speed_3]",
    "[speed_4]", "[speed_5]", "[speed_6]", "[speed_7]", "[speed_8]", "[speed_9]",
)
Scale = Literal["tiny", "full"]


@dataclass(frozen=True)
class RandomAssets:
    """A ChatTTS asset folder and the `ChatTTS.config.Config` it was built with."""

    root: Path
    config: object  # ChatTTS.config.Config (ChatTTS is imported lazily)


def _config(scale: Scale):
    from ChatTTS.config import Config

    config = Config()
    if scale == "tiny":  # fewer layers only: every tensor interface keeps its real width
        config.gpt.num_hidden_layers = 2
        config.gpt.intermediate_size = 768
        config.decoder.n_layer = 1
        config.dvae.encoder.n_layer = 1
        config.dvae.decoder.n_layer = 1
        config.vocos.backbone.init_args.num_layers = 1
    return config


def _write_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.add_special_tokens({"additional_special_tokens": list(CONTROL_TOKENS)})
    tokenizer.save_pretrained(str(folder))


def _write_gpt(folder: Path, gpt_cfg) -> None:
    from transformers import LlamaConfig, LlamaModel

    llama = LlamaConfig(
        hidden_size=gpt_cfg.hidden_size,
        intermediate_size=gpt_cfg.intermediate_size,
        num_attention_heads=gpt_cfg.num_attention_heads,
        num_key_value_heads=gpt_cfg.num_attention_heads,
        num_hidden_layers=gpt_cfg.num_hidden_layers,
        max_position_embeddings=gpt_cfg.max_position_embeddings,
        vocab_size=8,  # ChatTTS deletes embed_tokens and embeds with its own Embed module
    )
    LlamaModel(llama).save_pretrained(str(folder))


def _save(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def build_random_assets(root: Path, scale: Scale = "tiny", seed: int = 0) -> RandomAssets:
    """Write `root/asset/...` exactly as `Chat().load(source="custom")` lays it out."""
    from ChatTTS.model import DVAE, Embed
    from vocos import Vocos
    from vocos.pretrained import instantiate_class

    torch.manual_seed(seed)
    config = _config(scale)
    paths = {k: root / v for k, v in asdict(config.path).items()}
    paths["vocos_ckpt_path"].parent.mkdir(parents=True, exist_ok=True)
    vocos_parts = {k: instantiate_class(args=(), init=asdict(getattr(config.vocos, k)))
                   for k in ("feature_extractor", "backbone", "head")}
    _save(Vocos(**vocos_parts), paths["vocos_ckpt_path"])
    dvae = DVAE(decoder_config=asdict(config.dvae.decoder), encoder_config=asdict(config.dvae.encoder),
                vq_config=asdict(config.dvae.vq), dim=config.dvae.decoder.idim)
    _save(dvae, paths["dvae_ckpt_path"])
    _save(DVAE(decoder_config=asdict(config.decoder), dim=config.decoder.idim), paths["decoder_ckpt_path"])
    e = config.embed
    _save(Embed(e.hidden_size, e.num_audio_tokens, e.num_text_tokens, e.num_vq), paths["embed_path"])
    _write_gpt(paths["gpt_ckpt_path"], config.gpt)
    _write_tokenizer(paths["tokenizer_path"])
    (root / "asset" / "livecc_random.json").write_text(json.dumps({"scale": scale, "seed": seed}))
    return RandomAssets(root=root, config=config)
