"""Streaming through the persistent cache equals one forward over the whole conversation
(acceptance 1 of the engine issue), and the test can tell when positions are wrong."""

from __future__ import annotations

import pytest
import torch

from engine.capture.frames import Frame, RingBuffer
from engine.model.rope import segment_positions
from engine.runtime.reference import EagerRunner
from engine.session.session import SessionConfig, StreamingSession
from videos import synthetic_frame

TOL = 1e-5


class RecordingRunner(EagerRunner):
    """The reference runner, remembering every chunk's vision input for the one-shot forward."""

    def __init__(self, model):
        super().__init__(model)
        self.videos = []

    def encode_video(self, video):
        self.videos.append(video)
        return super().encode_video(video)


class DefaultPositionsRunner(RecordingRunner):
    """What LiveCC's demo does: model.forward with no position_ids, so transformers picks them
    (3-D on the first call, `arange + rope_deltas` afterwards)."""

    def prefill(self, ids, positions, video_embeds):
        kwargs = {}
        if video_embeds is not None:
            video = self.videos[-1]
            kwargs = dict(pixel_values_videos=video.pixel_values_videos, video_grid_thw=video.video_grid_thw,
                          mm_token_type_ids=(ids == self.video_token_id).int()[None] * 2)
        return self._forward_default(ids, **kwargs)

    def decode(self, token, position):
        return self._forward_default(torch.tensor([token]))

    @torch.inference_mode()
    def _forward_default(self, ids, **kwargs):
        out = self.model(input_ids=ids[None], past_key_values=self.cache, use_cache=True, **kwargs)
        self.cache = out.past_key_values
        return out.logits[0, -1].float()


def stream(loaded, runner_cls, size, n_chunks=5, positions="exact"):
    """Run 6 + 2*(n_chunks-1) frames of `size` through a session, ask a question, then one more chunk."""
    h, w = size
    cfg = SessionConfig(max_pixels=h * w, min_pixels=28 * 28, max_new_tokens=4, answer_max_new_tokens=6,
                        repetition_penalty=1.05, positions=positions)
    runner = runner_cls(loaded.model)
    session = StreamingSession(loaded, cfg, runner=runner)
    session.trace = []
    buffer = RingBuffer(256)
    n_frames = 6 + 2 * (n_chunks - 1)
    for i in range(n_frames):
        buffer.put(Frame(synthetic_frame(i * 0.5, w, h), i * 0.5))
    events = []
    chunks_done = 0
    for chunk in iter(lambda: session.frames.take(buffer, False, 2.0), None):
        events += list(session.process_chunk(chunk, buffer))
        chunks_done += 1
        if chunks_done == n_chunks - 1:
            events += list(session.answer("What moves on the screen?"))
    return session, runner, events


def one_shot_logits(loaded, session, runner):
    """Logits of every position from a single forward over the whole conversation."""
    tokens = torch.tensor(session.state.tokens)
    grids = [tuple(int(v) for v in video.video_grid_thw[0]) for video in runner.videos]
    video_pad = loaded.model.config.video_token_id
    positions, _ = segment_positions(tokens, grids, 0, video_pad)
    with torch.inference_mode():
        out = loaded.model(
            input_ids=tokens[None], position_ids=positions[:, None, :],
            pixel_values_videos=torch.cat([v.pixel_values_videos for v in runner.videos]),
            video_grid_thw=torch.cat([v.video_grid_thw for v in runner.videos]),
        )
    return out.logits[0].float()


SIZES = [(56, 56), (84, 112)]  # 56x56: the first chunk's time axis is its largest (position rule matters)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_streaming_logits_equal_one_shot(tiny_loaded, size):
    session, runner, events = stream(tiny_loaded, RecordingRunner, size)
    assert len(runner.videos) == 5 and runner.videos[0].video_grid_thw[0, 0] == 3  # 6 frames, then 2s
    assert any(type(e).__name__ == "Answer" and e.done for e in events)
    reference = one_shot_logits(tiny_loaded, session, runner)
    assert len(session.trace) > 5 + 4
    worst = max((logits - reference[index]).abs().max().item() for index, logits in session.trace)
    assert worst < TOL, f"streaming differs from one-shot by {worst}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_default_transformers_positions_are_detected(tiny_loaded, size):
    session, runner, _ = stream(tiny_loaded, DefaultPositionsRunner, size)
    reference = one_shot_logits(tiny_loaded, session, runner)
    worst = max((logits - reference[index]).abs().max().item() for index, logits in session.trace)
    assert worst > 100 * TOL, "the equivalence test cannot tell wrong positions from right ones"


def test_demo_positions_reproduce_livecc_demo(tiny_loaded):
    """--positions demo gives what transformers computes for LiveCC's demo loop (3-D only on an empty
    cache), so the switch measures exactly the demo's behaviour. 84x112: both 3-D rules agree there."""
    demo, _, _ = stream(tiny_loaded, RecordingRunner, (84, 112), positions="demo")
    default, _, _ = stream(tiny_loaded, DefaultPositionsRunner, (84, 112))
    assert demo.state.tokens == default.state.tokens and len(demo.trace) > 9
    worst = max((a[1] - b[1]).abs().max().item() for a, b in zip(demo.trace, default.trace, strict=True))
    assert worst < 1e-4, f"demo positions differ from LiveCC's demo by {worst}"
    exact, _, _ = stream(tiny_loaded, RecordingRunner, (84, 112))
    assert max((a[1] - b[1]).abs().max().item() for a, b in zip(exact.trace, demo.trace)) > 100 * TOL
