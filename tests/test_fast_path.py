"""The fast runner (static cache, batched vision attention; CUDA graphs on GPU) emits the same
greedy tokens as the eager reference on the same weights (fast-path acceptance 2 and 3)."""

from __future__ import annotations

import torch

from engine.runtime.fast import StaticRunner
from engine.capture.frames import Frame, RingBuffer
from engine.model.preprocess import preprocess_frames
from engine.runtime.reference import EagerRunner, make_runner
from engine.session.session import SessionConfig, StreamingSession
from videos import synthetic_frame


def run_tokens(loaded, runner, n_chunks=10):
    """Greedy tokens of 10 chunks with a question after the 5th, and the answer."""
    cfg = SessionConfig(max_pixels=84 * 112, min_pixels=28 * 28, max_new_tokens=8, answer_max_new_tokens=12)
    session = StreamingSession(loaded, cfg, runner=runner)
    buffer = RingBuffer(256)
    for i in range(6 + 2 * (n_chunks - 1)):
        buffer.put(Frame(synthetic_frame(i * 0.5, 112, 84), i * 0.5))
    buffer.close()
    outputs = []
    for n in range(n_chunks):
        list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
        if n == 4:
            outputs.append([a.text for a in session.answer("What is moving?")][-1])
    return session.conversation_ids, outputs


def test_fast_runner_emits_the_reference_tokens(tiny_loaded):
    fast_ids, fast_answer = run_tokens(tiny_loaded, StaticRunner(tiny_loaded.model, 4096))
    ref_ids, ref_answer = run_tokens(tiny_loaded, EagerRunner(tiny_loaded.model))
    assert len(ref_ids) > 10 * 20
    assert fast_ids == ref_ids
    assert fast_answer == ref_answer


def test_fast_vision_and_logits_match_reference(tiny_loaded):
    frames = [synthetic_frame(t, 140, 112) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)]
    video = preprocess_frames(frames, "cpu", max_pixels=140 * 112, min_pixels=28 * 28)
    fast, ref = StaticRunner(tiny_loaded.model, 1024), EagerRunner(tiny_loaded.model)
    assert torch.allclose(fast.encode_video(video), ref.encode_video(video), atol=1e-5, rtol=1e-5)


def test_off_switches_pick_the_reference(tiny_loaded, monkeypatch):
    monkeypatch.setenv("LIVECC_FAST", "1")
    assert isinstance(make_runner(tiny_loaded.model, 512), StaticRunner)
    monkeypatch.setenv("LIVECC_NO_FAST", "1")
    runner = make_runner(tiny_loaded.model, 512)
    assert type(runner) is EagerRunner
    session = StreamingSession(tiny_loaded, SessionConfig())
    assert type(session.runner) is EagerRunner
    monkeypatch.delenv("LIVECC_NO_FAST")
    monkeypatch.delenv("LIVECC_FAST")
    assert type(make_runner(tiny_loaded.model, 512)) is EagerRunner  # CPU default: the reference


def test_static_cache_refuses_to_overflow(tiny_loaded):
    runner = StaticRunner(tiny_loaded.model, 8)
    ids = torch.arange(6)
    pos = torch.arange(6).expand(3, -1)
    runner.prefill(ids, pos, None)
    try:
        runner.prefill(ids, pos + 6, None)
    except RuntimeError as exc:
        assert "KV cache full" in str(exc)
    else:
        raise AssertionError("overflow was not detected")


def test_prefill_in_pieces_equals_one_pass(tiny_loaded, monkeypatch):
    """A long segment with video (a compaction's re-prefill) split into pieces gives the same cache
    and logits as one pass."""
    frames = [synthetic_frame(t, 112, 84) for t in (0.0, 0.5)]
    video = preprocess_frames(frames, "cpu", max_pixels=84 * 112, min_pixels=28 * 28)
    whole = StaticRunner(tiny_loaded.model, 256)
    embeds = whole.encode_video(video)
    vid = tiny_loaded.model.config.video_token_id
    ids = torch.tensor([3, 4, 5] + [vid] * video.num_tokens + [6, 7, 8, 9, 10])
    positions = torch.arange(ids.numel()).expand(3, -1)
    expected = whole.prefill(ids, positions, embeds)
    pieces = StaticRunner(tiny_loaded.model, 256)
    monkeypatch.setattr(pieces, "PREFILL_PIECE", 5)
    got = pieces.prefill(ids, positions, embeds)
    assert torch.allclose(got, expected, atol=1e-5)
    n = ids.numel()
    assert torch.allclose(pieces.cache.k[:, :, :n], whole.cache.k[:, :, :n], atol=1e-5)


def test_sessions_share_one_fused_model_and_runner(tiny_loaded, monkeypatch):
    """A second session must not fuse the weights again (8.5 GB for the 7B) or hold a second cache."""
    monkeypatch.setenv("LIVECC_FAST", "1")
    first = StreamingSession(tiny_loaded, SessionConfig(kv_budget=4096))
    q_proj = tiny_loaded.model.model.language_model.layers[0].self_attn.q_proj
    storage = q_proj.weight.untyped_storage().data_ptr()
    first.runner._pick_graphs["stale"] = {}
    second = StreamingSession(tiny_loaded, SessionConfig(kv_budget=4096))
    assert second.runner is first.runner and second.runner.length == 0
    assert not second.runner._pick_graphs  # graphs bound to the first session's sampler are gone
    assert q_proj.weight.untyped_storage().data_ptr() == storage
    assert StaticRunner(tiny_loaded.model, 64).fused is first.runner.fused


def _reference_run(loaded, ids, first, n, seen):
    """Feed `first`, then each pick, n times on the eager reference: the picks and the seen set."""
    from engine.session.decoding import SamplingConfig, SelectRule, TokenSampler

    runner = EagerRunner(loaded.model)
    logits = runner.prefill(ids, torch.arange(ids.numel()).expand(3, -1), None)
    sampler = TokenSampler(logits.numel(), torch.device("cpu"), SamplingConfig())
    sampler.seen.copy_(seen)
    token, out = first, []
    for k in range(n):
        sampler.observe([token])
        token = int(sampler.choose(runner.decode(token, ids.numel() + k), SelectRule(), k + 1))
        out.append(token)
    return out, sampler.seen


def _static_run(loaded, ids, first, n, seen, consume, monkeypatch=None):
    """The fast runner's greedy run of n picks from `first`, closed after `consume` ids."""
    from engine.session.decoding import SamplingConfig, SelectRule, TokenSampler

    runner = StaticRunner(loaded.model, 256)
    logits = runner.prefill(ids, torch.arange(ids.numel()).expand(3, -1), None)
    sampler = TokenSampler(logits.numel(), torch.device("cpu"), SamplingConfig())
    sampler.seen.copy_(seen)
    steps = []
    step = runner._pick_step
    runner._pick_step = lambda *a: steps.append(1) or step(*a)  # counts the steps run
    run = runner.picks(first, ids.numel(), 1, n, lambda lg, k: sampler.choose(lg, SelectRule(), k), SelectRule(),
                       sampler.seen)
    got, ran = [], []
    for token in run:
        got.append(token)
        ran.append(len(steps))
        if len(got) == consume:
            break
    run.close()
    return got, ran, sampler.seen, runner.length


def test_greedy_run_ahead_is_undone_when_closed_early(tiny_loaded):
    """The fast runner queues step i + 1 before reading step i's id (on the CPU it computes it).
    Closed after 3 of 6 ids, the cache holds only the fed tokens and `seen` only their marks, even
    though a 4th step had already fed the 3rd id; a token seen before stays seen."""
    ids = torch.tensor([3, 9, 27, 81, 243, 17, 51])
    vocab = tiny_loaded.model.config.text_config.vocab_size
    empty = torch.zeros(vocab, dtype=torch.bool)
    expected, _ = _reference_run(tiny_loaded, ids, 5, 6, empty)
    got, ran, seen, length = _static_run(tiny_loaded, ids, 5, 6, empty, consume=3)
    assert got == expected[:3]
    assert ran == [2, 3, 4]  # one step ahead of every id read
    assert length == ids.numel() + 3  # tokens fed: 5 and the first two picks
    _, ref_seen = _reference_run(tiny_loaded, ids, 5, 2, empty)
    assert torch.equal(seen, ref_seen)  # the 3rd pick, fed by the step run ahead, is unmarked again
    every = torch.ones_like(empty)  # every token seen before: undoing the run ahead keeps its mark
    _, _, seen, _ = _static_run(tiny_loaded, ids, 5, 6, every, consume=3)
    assert bool(seen.all())
    whole, ran, seen, length = _static_run(tiny_loaded, ids, 5, 6, empty, consume=6)
    assert whole == expected and ran == [2, 3, 4, 5, 6, 6] and length == ids.numel() + 6  # never past count
    _, ref_seen = _reference_run(tiny_loaded, ids, 5, 6, empty)
    assert torch.equal(seen, ref_seen)


def test_no_decode_ahead_switch_reads_each_id_first(tiny_loaded, monkeypatch):
    monkeypatch.setenv("LIVECC_NO_DECODE_AHEAD", "1")
    ids = torch.tensor([3, 9, 27, 81, 243, 17, 51])
    empty = torch.zeros(tiny_loaded.model.config.text_config.vocab_size, dtype=torch.bool)
    expected, _ = _reference_run(tiny_loaded, ids, 5, 4, empty)
    got, ran, _, _ = _static_run(tiny_loaded, ids, 5, 4, empty, consume=4)
    assert got == expected and ran == [1, 2, 3, 4]


class _Recorded:
    """Stands in for a CUDA graph on the CPU: records the capture, replays by calling the step."""

    made: list = []

    def __init__(self, fn, inputs=(), *, pool, static, warmups):
        assert list(inputs) == [] and static and warmups == 0  # recorded without running: no warm-up
        self.fn = fn
        _Recorded.made.append(fn)

    def __call__(self):
        return self.fn()


def test_piecewise_prefill_equals_the_layer_loop(tiny_loaded, monkeypatch):
    """The graphed prefill's steps give the plain layer loop's logits and cache, with video, at
    three cache offsets, while its steps are captured a few per run (here one: a recorded stand-in
    for the CUDA graph, which replays exactly these steps)."""
    from engine.runtime import prefill_graphs
    from engine.runtime.prefill_graphs import PiecewisePrefill

    monkeypatch.setattr(prefill_graphs, "CUDAGraphed", _Recorded)
    monkeypatch.setattr(PiecewisePrefill, "CAPTURES_PER_RUN", 1)
    _Recorded.made.clear()

    frames = [synthetic_frame(t, 112, 84) for t in (0.0, 0.5)]
    video = preprocess_frames(frames, "cpu", max_pixels=84 * 112, min_pixels=28 * 28)
    vid = tiny_loaded.model.config.video_token_id
    ids = torch.tensor([3, 4, 5] + [vid] * video.num_tokens + [6, 7, 8])
    n = ids.numel()
    plain, piecewise = StaticRunner(tiny_loaded.model, 256), StaticRunner(tiny_loaded.model, 256)
    embeds = plain.encode_video(video)
    for runner in (plain, piecewise):
        runner.prefill(torch.tensor([9, 10, 11]), torch.arange(3).expand(3, -1), None)
    piece = piecewise._prefills[n] = PiecewisePrefill(piecewise, n, pool="a pool")
    steps = len(piece.steps)
    assert steps == len(tiny_loaded.model.model.language_model.layers) + 1
    for run, offset in enumerate((3, 3 + n, 3 + 2 * n)):  # its slots follow the cache length
        positions = torch.arange(offset, offset + n).expand(3, -1)
        expected = plain.prefill(ids, positions, embeds)
        got = piecewise.prefill(ids, positions, embeds)
        assert torch.equal(got, expected)
        end = offset + n
        assert piecewise.length == plain.length == end
        assert torch.equal(piecewise.cache.k[:, :, :end], plain.cache.k[:, :, :end])
        assert torch.equal(piecewise.cache.v[:, :, :end], plain.cache.v[:, :, :end])
        assert sum(g is not None for g in piece.graphs) == min(run + 1, steps)  # one more step per run
    assert piecewise._prefills[n] is piece and _Recorded.made == piece.steps[:3]


def test_prefill_graphs_once_a_size_repeats(tiny_loaded, monkeypatch):
    """A token count is graphed the second time it comes, at most PREFILL_GRAPH_SIZES counts; the
    fast runner still emits the reference tokens with them (10 chunks and a question)."""
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)  # no pool: the steps run eagerly
    runner = StaticRunner(tiny_loaded.model, 4096)
    runner._prefill_graphs = True
    assert runner._piecewise(40) is None and runner._piecewise(40) is not None
    for n in (41, 42, 43, 44):
        runner._piecewise(n)
        runner._piecewise(n)
    assert sorted(runner._prefills) == [40, 41, 42, 43]
    fast = StaticRunner(tiny_loaded.model, 4096)
    fast._prefill_graphs = True
    fast_ids, fast_answer = run_tokens(tiny_loaded, fast)
    assert fast._prefills  # the steady chunk turn was graphed
    ref_ids, ref_answer = run_tokens(tiny_loaded, EagerRunner(tiny_loaded.model))
    assert fast_ids == ref_ids and fast_answer == ref_answer
    monkeypatch.setenv("LIVECC_NO_PREFILL_GRAPH", "1")
    assert not StaticRunner(tiny_loaded.model, 64, cuda_graphs=True)._prefill_graphs


def test_decode_state_names_views_over_the_one_tensor_a_graph_reads():
    """Each name is a view of its slot in the one state tensor: writing it writes the tensor, and
    `set` clears the greedy step's marks."""
    from engine.runtime.decode_state import DecodeState

    state = DecodeState.zeros().set(7, 40, 41, 3)
    assert state.values.tolist() == [7, 40, 41, 3, 0, 0]
    assert (int(state.token), int(state.slot), int(state.position), int(state.step)) == (7, 40, 41, 3)
    assert state.token_slot.tolist() == [7, 40] and state.step.dim() == 0
    state.fed.copy_(state.token)
    state.was_seen.fill_(1)
    state.counters.add_(1)
    assert state.values.tolist() == [7, 41, 42, 4, 7, 1]
    assert state.set(1, 2, 3, 4).values.tolist() == [1, 2, 3, 4, 0, 0]
    try:
        DecodeState(torch.zeros(4, dtype=torch.long))
    except ValueError as exc:
        assert "(6,)" in str(exc)
    else:
        raise AssertionError("a state of the wrong size was accepted")


def test_both_runners_meet_the_runner_protocol_and_declare_what_they_support(tiny_loaded):
    """A session asks `supports_picks` / `supports_prefill_graphs` instead of probing for methods:
    each runner's declaration matches the methods it has."""
    from engine.runtime import Runner

    for runner in (StaticRunner(tiny_loaded.model, 64), EagerRunner(tiny_loaded.model)):
        assert isinstance(runner, Runner)
        assert runner.supports_picks == callable(getattr(runner, "picks", None))
        assert runner.supports_prefill_graphs == callable(getattr(runner, "drop_prefill_graphs", None))
    assert StaticRunner.supports_picks and StaticRunner.supports_prefill_graphs
    assert not (EagerRunner.supports_picks or EagerRunner.supports_prefill_graphs)


def test_stacked_chunks_are_graphed_per_grid_and_count_once_that_repeats(tiny_loaded):
    """The engine core's vision batches: n chunks of one grid in one pass equal each chunk through the
    model's own tower; a (grid, n) is graphed the second time it comes, up to GRAPH_CHUNKS chunks
    (without CUDA the graph wrapper runs its function on its static buffers)."""
    from engine.runtime.vision import FastVision

    model = tiny_loaded.model
    vision = FastVision(model, cuda_graphs=True)
    videos = [preprocess_frames([synthetic_frame(t, 112, 84), synthetic_frame(t + 0.5, 112, 84)], "cpu",
                                max_pixels=84 * 112, min_pixels=28 * 28) for t in range(6)]
    reference = EagerRunner(model)  # the model's own get_video_features
    alone = [reference.encode_video(v) for v in videos]
    for n in (1, 3, 5):
        pixels = torch.cat([v.pixel_values_videos for v in videos[:n]])
        for _ in range(2):
            got = vision.encode_stacked(pixels, videos[0], n)
            torch.testing.assert_close(got, torch.cat(alone[:n]), rtol=1e-5, atol=1e-5)
        assert ((videos[0].grid, n) in vision._graphs) == (n <= FastVision.GRAPH_CHUNKS)
