"""The fast path's fused projections: linears sharing an input (q/k/v, gate/up) become one
weight, bf16 or a QuantLinear, and these helpers run either kind."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model.quantize import QuantLinear, fuse_quant_rows


def _fuse_rows(*linears: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and biases) of linears sharing an input, then make each linear's
    parameters views into the fused tensor: one matmul instead of several. The originals are
    freed, so once done the model holds one copy (a layer's worth extra while fusing)."""
    weight = torch.cat([lin.weight.data for lin in linears])
    has_bias = all(lin.bias is not None for lin in linears)
    bias = torch.cat([lin.bias.data for lin in linears]) if has_bias else None
    row = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight.data = weight[row:row + n]
        if has_bias:
            lin.bias.data = bias[row:row + n]
        row += n
    return weight, bias


def fuse_layer(layer) -> tuple:
    """A decoder layer's (qkv weight, qkv bias, gate/up weight), each one fused projection."""
    attn, mlp = layer.self_attn, layer.mlp
    if isinstance(attn.q_proj, QuantLinear):  # fused QuantLinears carry their own bias
        return (fuse_quant_rows(attn.q_proj, attn.k_proj, attn.v_proj), None,
                fuse_quant_rows(mlp.gate_proj, mlp.up_proj))
    qkv_w, qkv_b = _fuse_rows(attn.q_proj, attn.k_proj, attn.v_proj)
    gate_up_w, _ = _fuse_rows(mlp.gate_proj, mlp.up_proj)
    return qkv_w, qkv_b, gate_up_w


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A fused projection: a bf16 weight tensor, or a QuantLinear (its kernel picks the path)."""
    return weight(x) if isinstance(weight, QuantLinear) else F.linear(x, weight, bias)


def linear_add(residual: torch.Tensor, x: torch.Tensor, linear: torch.nn.Module, fused: bool = False) -> torch.Tensor:
    """residual + linear(x): one addmm for bf16 (the add fused into the GEMM); quantized, two ops,
    or with `fused` one GEMV that adds the residual (one token on the GPU)."""
    if isinstance(linear, QuantLinear):
        return linear(x, residual=residual) if fused else residual + linear(x)
    return torch.addmm(residual, x, linear.weight.t())


def gated(x: torch.Tensor, gate_up, silu_mul) -> torch.Tensor:
    """SiLU(gate) * up of fused gate/up rows: in the quantized GEMV's epilogue, else after the GEMM."""
    if isinstance(gate_up, QuantLinear):
        return gate_up(x, glu=True)
    return silu_mul(F.linear(x, gate_up))
