"""The one CUDA-graph helper (engine/runtime/graphs.py) off the GPU: without CUDA it runs the step
eagerly on the same static buffers a graph would read, and it refuses a shape change with one
line naming the caller's off switch, as a replay does."""

from __future__ import annotations

import pytest
import torch

from engine.runtime.graphs import CUDAGraphed


def test_without_cuda_the_step_runs_eagerly_on_its_own_buffers():
    calls = []

    def step(x):
        calls.append(x)
        return x * 2

    example = torch.tensor([1.0, 2.0])
    graphed = CUDAGraphed(step, [example], enabled=False)
    assert graphed.graph is None and calls == []  # no warm-up, no capture
    fed = torch.tensor([3.0, 4.0])
    assert torch.equal(graphed(fed), torch.tensor([6.0, 8.0]))
    assert calls[0] is graphed.inputs[0] and calls[0] is not fed and calls[0] is not example
    assert torch.equal(example, torch.tensor([1.0, 2.0]))  # the example was copied, not reused


def test_a_static_step_reads_the_callers_tensors():
    state = torch.zeros(3)
    graphed = CUDAGraphed(lambda s: s.sum(), [state], static=True, enabled=False)
    state.copy_(torch.tensor([1.0, 2.0, 3.0]))  # filled after the "capture", as the fast runner does
    assert float(graphed()) == 6.0
    zero_inputs = CUDAGraphed(lambda: state.max(), static=True, enabled=False)
    assert float(zero_inputs()) == 3.0


def test_a_shape_change_raises_one_line_naming_the_off_switch():
    graphed = CUDAGraphed(lambda x: x, [torch.zeros(4)], off_switch="LIVECC_TTS_NO_CUDA_GRAPH", enabled=False)
    with pytest.raises(ValueError) as err:
        graphed(torch.zeros(5))
    message = str(err.value)
    assert "\n" not in message and "(5,)" in message and "(4,)" in message
    assert "LIVECC_TTS_NO_CUDA_GRAPH=1" in message
    with pytest.raises(ValueError, match="2 inputs, captured 1"):
        graphed(torch.zeros(4), torch.zeros(4))


def test_the_default_is_eager_where_there_is_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    graphed = CUDAGraphed(lambda x: x + 1, [torch.zeros(2)])
    assert graphed.graph is None and torch.equal(graphed(torch.ones(2)), torch.full((2,), 2.0))
