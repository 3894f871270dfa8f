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


class _FakeGraph:
    """What CUDAGraphed asks of torch.cuda.CUDAGraph, recorded."""

    def __init__(self):
        self.calls = []

    def capture_begin(self, *args, **kwargs):
        from engine.runtime.gpu_lock import CAPTURE_LOCK

        self.calls.append(("begin", args, kwargs))
        self.began_on, self.locked = _ACTIVE[-1], CAPTURE_LOCK._is_owned()

    def capture_end(self):
        self.calls.append(("end",))

    def replay(self):
        self.calls.append(("replay",))


_ACTIVE: list = [None]  # the stream made current by the fake torch.cuda.stream


class _FakeStream:
    device = torch.device("cpu")

    def __init__(self):
        self.waited = []

    def wait_stream(self, other):
        self.waited.append(other)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Enough of torch.cuda for a capture off the GPU; waiting for the GPU or emptying a cache fails."""
    import contextlib

    graphs, current = [], _FakeStream()

    def new_graph():
        graphs.append(_FakeGraph())
        return graphs[-1]

    def forbidden(*_args, **_kwargs):
        raise AssertionError("the capture waited for the GPU or emptied a cache")

    monkeypatch.setattr(CUDAGraphed, "_side_stream", None)
    monkeypatch.setattr(CUDAGraphed, "_capture_stream", None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", new_graph)
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    @contextlib.contextmanager
    def made_current(stream):
        _ACTIVE.append(stream)
        try:
            yield
        finally:
            _ACTIVE.pop()

    monkeypatch.setattr(torch.cuda, "stream", made_current)
    for name in ("synchronize", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    monkeypatch.setattr(torch._C, "_host_emptyCache", forbidden, raising=False)
    return graphs, current


def test_a_capture_mid_stream_waits_for_nothing_and_keeps_the_caches(fake_cuda, monkeypatch):
    """torch.cuda.graph first waits for the GPU and empties the allocator's device and pinned host
    caches: in a core serving streams each capture would stall every stream and make the next
    allocations and pinned uploads slow again. The lean capture orders the side stream after the
    current one and records into the pool, nothing more; a failed step still ends the capture."""
    monkeypatch.delenv("LIVECC_NO_LEAN_CAPTURE", raising=False)
    graphs, current = fake_cuda
    seen = []

    def step(x):
        seen.append(graphs[-1].calls[:] if graphs else None)  # the graph's calls when the step ran
        return x + 1

    graphed = CUDAGraphed(step, [torch.zeros(2)], pool="pool", warmups=1, enabled=True)
    graph = graphs[0]
    assert graph.calls == [("begin", ("pool",), {"capture_error_mode": "thread_local"}), ("end",)]
    assert seen == [None, [graph.calls[0]]]  # the warm-up before any graph, the capture inside it
    side, capture = CUDAGraphed._side_stream, CUDAGraphed._capture_stream
    assert side is not capture  # another thread's warm-up on the capturing stream would land in the graph
    assert side.waited == [current] and capture.waited == [current]
    assert current.waited == [side, capture]  # each ordered both ways
    assert graph.began_on is capture and graph.locked  # recorded on the capture stream, one capture at a time
    out = graphed(torch.ones(2))
    assert graph.calls[-1] == ("replay",) and out is graphed.output

    def broken(x):
        raise RuntimeError("not capturable")

    with pytest.raises(RuntimeError, match="not capturable"):
        CUDAGraphed(broken, [torch.zeros(2)], warmups=0, enabled=True)
    assert graphs[-1].calls == [("begin", (), {"capture_error_mode": "thread_local"}), ("end",)]


def test_the_off_switch_captures_through_torch_cuda_graph(fake_cuda, monkeypatch):
    import contextlib

    monkeypatch.setenv("LIVECC_NO_LEAN_CAPTURE", "1")
    used = []

    @contextlib.contextmanager
    def graph(cuda_graph, **kwargs):
        used.append(kwargs)
        yield

    monkeypatch.setattr(torch.cuda, "graph", graph)
    CUDAGraphed(lambda x: x * 2, [torch.zeros(2)], pool="pool", warmups=0, enabled=True)
    assert used == [{"pool": "pool", "stream": None, "capture_error_mode": "thread_local"}]
    assert fake_cuda[0][0].calls == []  # no capture of its own


def test_a_capture_out_of_memory_empties_the_cache_and_captures_again(fake_cuda, monkeypatch):
    """During a capture the allocator cannot give its cached blocks back to the driver: a capture
    that runs out of memory ends, the cache is emptied (outside any capture) and it captures again."""
    monkeypatch.delenv("LIVECC_NO_LEAN_CAPTURE", raising=False)
    graphs, _ = fake_cuda
    emptied, runs = [], []
    from engine.runtime.gpu_lock import CAPTURE_LOCK

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append((len(graphs), CAPTURE_LOCK._is_owned())))

    def step(x):
        runs.append(len(graphs))
        if len(runs) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return x + 1

    graphed = CUDAGraphed(step, [torch.zeros(2)], warmups=0, enabled=True)
    assert emptied == [(1, True)] and runs == [1, 2]  # emptied between the captures, while no other captures
    assert graphs[0].calls[-1] == ("end",) and graphs[1].calls[-1] == ("end",)
    assert graphed.graph is graphs[1]
