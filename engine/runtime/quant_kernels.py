"""Hands QuantLinear its CUDA kernels (engine/runtime/triton_quant.py) when Triton imports: the
model package holds the quantized layers but may not import the runtime."""

from __future__ import annotations

import logging

import torch

from engine.model.quantize import QuantLinear

log = logging.getLogger(__name__)


def install_quant_kernels() -> None:
    if QuantLinear.kernels or not torch.cuda.is_available():
        return
    try:
        from .triton_quant import install
    except ImportError as exc:  # checked before loading (quantize.check_supported); this is a late guard
        log.warning("quantized kernels unavailable (%s): dequantizing in plain torch", exc)
        return
    install()
