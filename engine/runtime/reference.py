"""Model runners: the part of the engine that touches the network's weights.

`EagerRunner` is the reference: plain PyTorch forwards with a growing `DynamicCache`. Every fast
path (engine/runtime/fast.py) must produce the same tokens as this one on the same weights.
"""

from __future__ import annotations


import torch

from engine import flags
from engine.model.preprocess import VideoInputs

from .quant_kernels import install_quant_kernels


class EagerRunner:
    """Vision encode, prefill and one-token decode over a persistent KV cache."""

    name = "eager"
    supports_picks = False  # engine/runtime/runner.py: the capabilities a session may ask for
    supports_prefill_graphs = False

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.lm = model.model.language_model
        self.video_token_id = model.config.video_token_id
        self.cache = None
        install_quant_kernels()

    @property
    def device(self) -> torch.device:
        return self.lm.embed_tokens.weight.device

    @property
    def length(self) -> int:
        return 0 if self.cache is None else self.cache.get_seq_length()

    def reset(self) -> None:
        self.cache = None

    def crop(self, length: int) -> None:
        """Forget every cached token from `length` on (a recall's video, after its answer)."""
        if self.cache is not None and length < self.length:
            self.cache.crop(length - self.length)  # negative: tokens to drop (the form every transformers 5.x takes)

    @torch.inference_mode()
    def encode_video(self, video: VideoInputs) -> torch.Tensor:
        """(n_tokens, hidden) merged visual embeddings for one chunk."""
        out = self.model.model.get_video_features(video.pixel_values_videos, video.video_grid_thw)
        return torch.cat(list(out.pooler_output), dim=0)

    def _embed(self, ids: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        embeds = self.lm.embed_tokens(ids[None])
        if video_embeds is not None:
            mask = (ids == self.video_token_id)[None, :, None].expand_as(embeds)
            embeds = embeds.masked_scatter(mask, video_embeds.to(embeds.dtype))
        return embeds

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None = None,
                all_logits: bool = False) -> torch.Tensor:
        """Append `ids` (1-D, on device) at `positions` (3, L) to the cache; return float32 logits of the
        last position (V,), or of every position (L, V) with all_logits."""
        out = self.lm(inputs_embeds=self._embed(ids, video_embeds), position_ids=positions[:, None, :],
                      past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        hidden = out.last_hidden_state[0] if all_logits else out.last_hidden_state[0, -1:]
        logits = self.model.lm_head(hidden).float()
        return logits if all_logits else logits[0]

    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        return self.forward(ids, positions, video_embeds)

    def decode(self, token: int, position: int) -> torch.Tensor:
        ids = torch.tensor([token], device=self.device)
        pos = torch.full((3, 1), position, dtype=torch.long, device=self.device)
        return self.forward(ids, pos)


def shares_runner(model: torch.nn.Module) -> bool:
    """Whether `make_runner` gives every session of `model` the same cached fast runner, so the model
    serves one single-stream session at a time (many sessions go through the engine core instead)."""
    if flags.get("LIVECC_NO_FAST"):
        return False
    return model.model.language_model.embed_tokens.weight.device.type == "cuda" or flags.get("LIVECC_FAST")


def make_runner(model: torch.nn.Module, max_tokens: int):
    """The static-cache, CUDA-graphed runner on CUDA, the eager reference elsewhere.
    LIVECC_NO_FAST=1 forces the reference; LIVECC_FAST=1 forces the fast runner (also on CPU,
    where it runs without graphs: that is how CI checks it against the reference)."""
    if shares_runner(model):
        from .fast import StaticRunner

        # One per model: a new session reuses its cache and graphs instead of holding a second copy.
        cached = getattr(model, "_livecc_static_runner", None)
        if cached is not None and cached.cache.capacity == max_tokens:
            cached.forget_selection()
            return cached
        model._livecc_static_runner = None  # release the old one before allocating its replacement
        model._livecc_static_runner = StaticRunner(model, max_tokens)
        return model._livecc_static_runner
    return EagerRunner(model)
