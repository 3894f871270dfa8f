"""The graphed ChatTTS code-token generator (tts/chattts_graph.py) against ChatTTS' own generate,
on CPU with tiny random assets: the same step code runs eagerly (no capture) and must give the
transformers forward's logits, and ChatTTS' tokens, hiddens and stream pieces at a temperature
low enough that sampling is argmax."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

pytest.importorskip("ChatTTS", reason="ChatTTS is installed by `python -m tts.install` (make test does it)")

import torch  # noqa: E402
from ChatTTS.model.gpt import GPT  # noqa: E402

from tts.chattts_assets import build_random_assets  # noqa: E402
from tts.chattts_graph import ChatTTSCodeGenerator, StaticLlama  # noqa: E402
from tts.chattts_synth import ChatTTSOptions, ChatTTSSynth  # noqa: E402

TEXT = "the dog runs across the street"
COLD = 1e-4  # temperature: the sampled token is the argmax in both implementations


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    assets = build_random_assets(tmp_path_factory.mktemp("chattts"), scale="tiny")
    options = ChatTTSOptions(asset_dir=assets.root, device="cpu", tokens_per_char=2.0, token_floor=8,
                             min_token_fraction=1.0, sampling_seed=7, cuda_graph=False)
    s = ChatTTSSynth(options, config=assets.config)
    yield s
    s.close()


@pytest.fixture(scope="module")
def code_call(synth):
    """The (args, kwargs) ChatTTS' `_infer_code` passes to `gpt.generate` for TEXT."""
    seen = {}

    def record(*args, **kwargs):
        seen["call"] = args, kwargs
        return iter(())

    synth.chat.gpt.generate = record
    try:
        list(synth.chat._infer_code([TEXT], False, synth.device, True, synth._params(TEXT)))
    finally:
        del synth.chat.gpt.generate
    return seen["call"]


def _cold(kwargs: dict, **changes) -> dict:
    base = dict(kwargs, temperature=torch.full((4,), COLD), manual_seed=0, max_new_token=40, min_new_token=0)
    return base | changes


def _both(synth, code_call, **changes):
    """ChatTTS' pieces and this module's (eager) for the same call."""
    args, kwargs = code_call
    kwargs = _cold(kwargs, **changes)
    ours = ChatTTSCodeGenerator(synth.chat.gpt, eager=True)
    return list(GPT.generate(synth.chat.gpt, *args, **kwargs)), list(ours.generate(*args, **kwargs))


def _early_eos(synth, code_call) -> int:
    """A token id the cold run emits at step 10 (codebook 0): as EOS it ends the run by then."""
    args, kwargs = code_call
    return int(list(GPT.generate(synth.chat.gpt, *args, **_cold(kwargs, max_new_token=12)))[-1].ids[0][10, 0])


def _assert_same_pieces(reference, ours):
    assert [p.ids[0].shape[0] for p in ours] == [p.ids[0].shape[0] for p in reference]
    for ref, got in zip(reference, ours):
        assert torch.equal(got.ids[0], ref.ids[0])
        torch.testing.assert_close(got.hiddens[0], ref.hiddens[0], atol=1e-5, rtol=1e-5)
        assert got.hiddens[0].dtype == torch.float32


def test_step_logits_match_the_transformers_forward(synth, code_call):
    """Prefill, then code tokens one at a time through the static cache: every step's code-head
    logits equal ChatTTS' LlamaModel forward over the whole sequence."""
    args, _ = code_call
    emb, gpt = args[0], synth.chat.gpt
    codes = torch.randint(0, gpt.num_audio_tokens - 1, (6, gpt.num_vq), generator=torch.Generator().manual_seed(1))
    code_emb = torch.stack([gpt.emb_code[q](codes[:, q]) for q in range(gpt.num_vq)], 2).sum(2)[None]
    with torch.inference_mode():
        full = gpt.gpt(inputs_embeds=torch.cat([emb, code_emb], 1), use_cache=False).last_hidden_state.float()
        expected = torch.stack([torch.stack([head(full[0, t]) for head in gpt.head_code])
                                for t in range(emb.shape[1] - 1, full.shape[1])])
        generator, llama = ChatTTSCodeGenerator(gpt, eager=True), StaticLlama(gpt.gpt, capacity=64)
        hiddens = [llama.prefill(emb)] + [llama.decode(code_emb[:, t:t + 1], torch.tensor([emb.shape[1] + t]))
                                          for t in range(codes.shape[0])]
        got = torch.stack([generator.head_logits(h.float()) for h in hiddens])
    assert got.shape == expected.shape == (codes.shape[0] + 1, gpt.num_vq, gpt.num_audio_tokens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stream,stream_batch,early_eos", [
    (False, 24, False), (False, 24, True), (True, 4, False), (True, 4, True), (True, 5, True)])
def test_cold_tokens_hiddens_and_pieces_equal_chattts(synth, code_call, stream, stream_batch, early_eos):
    eos = _early_eos(synth, code_call) if early_eos else code_call[1]["eos_token"]
    reference, ours = _both(synth, code_call, stream=stream, stream_batch=stream_batch, eos_token=eos)
    _assert_same_pieces(reference, ours)
    assert ours[-1].ids[0].shape[0] > 0 and ours[-1].attentions == []
    if early_eos:
        assert ours[-1].ids[0].shape[0] <= 10  # ended at EOS, not at max_new_token
    if stream:
        assert len(ours) >= 2


def test_min_new_token_holds_eos_back(synth, code_call):
    eos = _early_eos(synth, code_call)
    reference, ours = _both(synth, code_call, eos_token=eos, min_new_token=20, max_new_token=30)
    _assert_same_pieces(reference, ours)
    assert ours[-1].ids[0].shape[0] >= 20


def test_seeded_sampling_at_the_synth_temperature_reproduces_chattts(synth, code_call):
    """ChatTTS reseeds before every draw; kept, a seeded run gives ChatTTS' own tokens."""
    reference, ours = _both(synth, code_call, temperature=torch.full((4,), 0.3), manual_seed=3)
    _assert_same_pieces(reference, ours)


def test_interrupt_stops_between_steps(synth, code_call):
    args, kwargs = code_call
    context = GPT.Context()
    pieces = ChatTTSCodeGenerator(synth.chat.gpt, eager=True).generate(
        *args, **_cold(kwargs, stream=True, stream_batch=4, min_new_token=40, context=context))
    first = next(pieces)
    context.set(True)
    rest = list(pieces)
    assert first.ids[0].shape[0] == 4
    assert [p.ids[0].shape[0] for p in rest] == [4]  # the final piece, right after the interrupt


class _Spy:
    """Counts calls of a function patched on a class and runs it."""

    def __init__(self, monkeypatch, owner, name):
        self.calls, original = 0, getattr(owner, name)

        @functools.wraps(original)  # keeps the signature the generator binds its arguments to
        def spy(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)


@pytest.fixture
def spies(monkeypatch):
    return _Spy(monkeypatch, GPT, "generate"), _Spy(monkeypatch, ChatTTSCodeGenerator, "_decode")


@pytest.mark.parametrize("case", ["batch", "too_long", "text", "unknown_processor"])
def test_what_it_cannot_run_goes_to_chattts_generate(synth, code_call, spies, case):
    chattts, ours = spies
    args, kwargs = code_call
    kwargs = _cold(kwargs, max_new_token=6)
    if case == "batch":
        args = (args[0].expand(2, -1, -1), args[1].expand(2, -1, -1))
        kwargs["attention_mask"] = kwargs["attention_mask"].expand(2, -1)
    elif case == "too_long":
        kwargs["max_new_token"] = 64 - args[1].shape[1] + 1
    elif case == "text":
        kwargs |= dict(infer_text=True, temperature=torch.full((1,), COLD), logits_processors=())  # as the refiner
    else:
        kwargs["logits_processors"] = (*kwargs["logits_processors"], lambda ids, logits: logits)
    generator = ChatTTSCodeGenerator(synth.chat.gpt, capacity=64, eager=True)
    out = list(generator.generate(*args, **kwargs))
    assert (chattts.calls, ours.calls) == (1, 0)
    assert out and out[-1].ids[0].shape[0] > 0


def test_a_generation_interleaved_with_another_runs_chattts_generate(synth, code_call, spies):
    """The static cache serves one generation at a time; one started meanwhile is ChatTTS' own, and
    neither disturbs the other."""
    chattts, ours = spies
    args, kwargs = code_call
    kwargs = _cold(kwargs, stream=True, stream_batch=4, max_new_token=12)
    generator = ChatTTSCodeGenerator(synth.chat.gpt, eager=True)
    first = generator.generate(*args, **kwargs)
    pieces = [next(first)]
    second = list(generator.generate(*args, **kwargs))
    pieces += list(first)
    assert (chattts.calls, ours.calls, generator.runs, generator.handed_over) == (1, 1, 1, 1)
    reference = list(GPT.generate(synth.chat.gpt, *args, **kwargs))
    _assert_same_pieces(reference, pieces)
    _assert_same_pieces(reference, second)
    list(generator.generate(*args, **kwargs))
    assert generator.runs == 2  # the cache is free again once a generation ends


def test_cpu_without_eager_mode_goes_to_chattts_generate(synth, code_call, spies):
    chattts, ours = spies
    args, kwargs = code_call
    list(ChatTTSCodeGenerator(synth.chat.gpt).generate(*args, **_cold(kwargs, max_new_token=6)))
    assert (chattts.calls, ours.calls) == (1, 0)


def test_off_switch_routes_the_synth_to_chattts_generate(synth, spies):
    """cuda_graph=False (LIVECC_TTS_CUDA_GRAPH=0): nothing installed, ChatTTS' generate runs; on,
    the generator runs (eager here, as on a CPU it would hand over) and the audio is the same."""
    chattts, ours = spies
    before = synth.options
    cold = dataclasses.replace(before, temperature=COLD)
    synth.set_options(cold)
    assert synth.code_generator is None and "generate" not in vars(synth.chat.gpt)
    off = synth.synthesize(TEXT)
    assert (chattts.calls, ours.calls) == (1, 0)
    try:
        synth.set_options(dataclasses.replace(cold, cuda_graph=True))
        synth.code_generator.eager = True
        on = synth.synthesize(TEXT)
        assert (chattts.calls, ours.calls) == (1, 1)
    finally:
        synth.set_options(before)
    assert "generate" not in vars(synth.chat.gpt)
    assert on.shape == off.shape and np.allclose(on, off, atol=1e-4)


@pytest.mark.slow
def test_bench_tts_smoke_reports_the_graph_rows_and_the_token_check(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_tts.py"), "--device", "cpu", "--scale",
                           "tiny", "--runs", "1", "--rows", "livecc_defaults",
                           "--date", "2000-01-01", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("tts_chattts_tiny_*_2000-01-01.json")).read_text())
    rows = report["results"]
    assert set(rows) == {"livecc_defaults"}
    row = rows["livecc_defaults"]
    assert row["check"]["generator_ran"] and row["check"]["tokens_equal"] and row["check"]["cold_tokens"] > 0
    assert row["code_ms_per_token"] > 0 and row["rtf"] > 0 and row["code_tokens"] == row["check"]["cold_tokens"]
    assert "tokens equal" in next(tmp_path.glob("*.md")).read_text()
