"""A tiny random Qwen2-VL for tests and offline demos.

The checkpoint is saved exactly like a real one (config.json, safetensors, tokenizer files with
the Qwen2-VL chat template), so `engine.model.load_model` loads it through the same code path.
The tokenizer is a byte-level BPE trained here on a small corpus, carrying the Qwen2-VL special
tokens; ' ...' (LiveCC's "the stream goes on" marker) is a single token as in Qwen2's vocabulary.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from engine.errors import ModelLoadError

from .loading import quiet_progress_bars

QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2's pre-tokenizer split (GPT-4 style, single digits).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_WORDS = (
    "the a man woman player ball team goal crowd camera screen video shows moving circle red blue "
    "bar turns left right now and is are on in at of to with he she they it this that what who "
    "where when how many describe please see scene shot game score pass shoots runs looks into "
    "background light dark table hand person people car road sky green white black fast slow "
    "system user assistant helpful you You are a helpful assistant Time Please describe the video"
).split()


def _corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
        t0 = rng.randint(0, 3600) / 2
        lines.append(f"Time={t0:.1f}-{t0 + 1:.1f}s {words.capitalize()}. {words} ...")
        if i % 5 == 0:
            lines.append(f"What is {words}? It {words}, {rng.randint(0, 99)} ...")
    return lines


def build_tokenizer(vocab_size: int = 800):
    """Train a byte-level BPE with Qwen2-VL's special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = QWEN2_VL_CHAT_TEMPLATE
    ids = fast(" ...", add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise RuntimeError(f"tiny tokenizer must keep ' ...' as one token, got {ids}")
    return fast


def tiny_config(tokenizer):
    """Qwen2-VL config at toy size: hidden 64, 2 layers, 2-block vision tower."""
    from transformers import Qwen2VLConfig

    tid = tokenizer.convert_tokens_to_ids
    head_dim = 16
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, rope_theta=1_000_000.0,
            bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"),
            pad_token_id=tid("<|endoftext|>"), rms_norm_eps=1e-6,
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
            temporal_patch_size=2, spatial_merge_size=2, in_channels=3,
        ),
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
    ), head_dim


def make_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Build and save a random tiny Qwen2-VL + tokenizer at `path` (a new or empty folder); returns
    the path. Raises ModelLoadError naming the fix when the folder cannot be written."""
    from transformers import Qwen2VLForConditionalGeneration

    path = Path(path).expanduser()
    _check_new_folder(path)
    tokenizer = build_tokenizer()
    config, _ = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger than the default init so random logits are not all alike
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.08)
    try:
        with quiet_progress_bars():
            model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    except OSError as exc:
        raise ModelLoadError(f"cannot write the tiny model into {path} ({exc.strerror or exc}): "
                             "free some space or choose another folder") from None
    return path


TINY_FILES = {"chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
              "tokenizer_config.json"}  # what a tiny model folder holds: it may be built again over them


def _check_new_folder(path: Path) -> None:
    """Never write random weights over something else: a file, or a folder that holds anything but an
    earlier tiny model (so the quick start can be run twice)."""
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{path} is a file: give the name of a new folder for the tiny model")
    if path.is_dir() and not {p.name for p in path.iterdir()} <= TINY_FILES:
        raise ModelLoadError(f"{path} is not empty: give a new or empty folder for the tiny model")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"cannot create {path} ({exc.strerror or exc}): choose a writable place") from None
