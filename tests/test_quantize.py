"""Weight-only int8/int4 (issue 12): the packed weights are what runs, the fast path and the
reference give the same greedy tokens per precision, the memory plan picks the precision that
fits a card, and bad requests fail with one line that names the fix."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

from livecc.cli.main import build_parser, main
from engine.model import memory_plan, quantize as quant
from engine.model.loading import load_model
from engine.model.memory_plan import MemoryPlan, ModelShape, plan_memory
from engine.model.quantize import QuantizeError, QuantLinear, QuantRequest
from engine.runtime.fast import StaticRunner
from engine.runtime.reference import EagerRunner
from test_fast_path import run_tokens
from videos import write_video

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3
QWEN2_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                        num_key_value_heads=4, vocab_size=152064)
QWEN2_VL_7B_VISION = dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4,
                          spatial_merge_size=2)


@pytest.fixture(scope="module", params=["int8", "int4"])
def quantized(request, tiny_model_dir):
    """A fresh tiny model (the session-wide one stays float) loaded at each precision."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIVECC_NO_QUANT_CACHE", "1")  # nothing written under the user's home
        return load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest(request.param))


def test_the_quantized_weights_are_what_the_model_holds_and_runs(quantized, tiny_loaded):
    bits = 8 if quantized.precision == "int8" else 4
    q_proj = quantized.model.model.language_model.layers[0].self_attn.q_proj
    float_q = tiny_loaded.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, QuantLinear) and not hasattr(q_proj, "weight")
    assert q_proj.qweight.dtype == (torch.int8 if bits == 8 else torch.uint8)
    # 1 byte per weight at int8, half a byte at int4: 4x / 8x fewer than the fp32 weight
    # (the float weight's own bytes: after a fast runner has fused q/k/v, its storage is the fused tensor)
    float_bytes = float_q.weight.numel() * float_q.weight.element_size()
    assert q_proj.qweight.untyped_storage().nbytes() * 32 // bits == float_bytes
    assert isinstance(quantized.model.lm_head, QuantLinear)
    assert all(isinstance(m, QuantLinear) and m.bits == 8 for m in quantized.model.model.visual.blocks[0].mlp.modules()
               if isinstance(m, (QuantLinear, torch.nn.Linear)))
    no_float_matrices = [n for n, p in quantized.model.named_parameters() if p.dim() == 2 and "embed" not in n]
    assert no_float_matrices == []
    calls = []
    hook = q_proj.register_forward_hook(lambda *_: calls.append(1))
    try:
        run_tokens(quantized, EagerRunner(quantized.model), n_chunks=1)
    finally:
        hook.remove()
    assert calls  # the packed layer is on the path the tokens take


def test_fast_path_and_reference_give_the_same_tokens_per_precision(quantized):
    fast_ids, fast_answer = run_tokens(quantized, StaticRunner(quantized.model, 4096))
    ref_ids, ref_answer = run_tokens(quantized, EagerRunner(quantized.model))
    assert len(ref_ids) > 200
    assert fast_ids == ref_ids and fast_answer == ref_answer


def test_packing_round_trips_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(16, 256)
    for bits, (q, s) in ((8, quant.quantize_int8(w)), (4, quant.quantize_int4(w, 128))):
        err = (quant.dequantize(q, s, bits, torch.float32) - w).abs()
        step = s if bits == 8 else s.repeat_interleave(128, dim=1)
        assert (err <= step / 2 + 1e-6).all()


@pytest.fixture(scope="module")
def shape_7b() -> ModelShape:
    from transformers import Qwen2VLConfig

    return ModelShape.from_config(Qwen2VLConfig(text_config=QWEN2_VL_7B_TEXT, vision_config=QWEN2_VL_7B_VISION))


@pytest.mark.parametrize("free_gib, expected", [(23, "none"), (15, "int8"), (10, "int4")])
def test_auto_picks_the_largest_precision_that_fits(shape_7b, free_gib, expected):
    """A 24 GB card keeps bf16 (16.6 GB of weights), a 16 GB one takes int8, a 12 GB one int4."""
    plan = plan_memory(shape_7b, "auto", free_gib * GIB, 16384, speech_on_gpu=False)
    assert plan.precision == expected and plan.kv_budget == 16384
    assert plan.reason and expected in plan.describe()


def test_speech_on_the_gpu_can_push_auto_down(shape_7b):
    alone = plan_memory(shape_7b, "auto", 19 * GIB, 16384, speech_on_gpu=False)
    with_speech = plan_memory(shape_7b, "auto", 19 * GIB, 16384, speech_on_gpu=True)
    assert (alone.precision, with_speech.precision) == ("none", "int8")


def test_a_tight_card_gets_a_smaller_kv_budget_and_an_impossible_one_an_error(shape_7b):
    tight = plan_memory(shape_7b, "int4", 7 * GIB, 16384, speech_on_gpu=False)
    assert tight.precision == "int4" and 4096 <= tight.kv_budget < 16384
    assert str(tight.kv_budget) in tight.describe()
    with pytest.raises(QuantizeError) as err:
        plan_memory(shape_7b, "auto", 3 * GIB, 16384, speech_on_gpu=False)
    message = str(err.value)
    assert "\n" not in message and "int4" in message and "--max-pixels" in message and "--kv-budget" in message


def test_the_session_runs_with_the_budget_the_plan_sized(tiny_loaded):
    from dataclasses import replace

    from engine.session.session import SessionConfig, StreamingSession

    plan = MemoryPlan("none", 4096, 1.0, 0.1, 0.1, 0.0, 8.0, "test")
    session = StreamingSession(replace(tiny_loaded, plan=plan), SessionConfig(kv_budget=16384))
    assert session.config.kv_budget == 4096


def test_a_budget_that_cannot_fit_exits_2_with_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    video = write_video(tmp_path / "clip.mp4", seconds=1.0)
    monkeypatch.setattr(memory_plan, "free_memory", lambda device: 64 * 1024 ** 2)  # a card with 64 MB free
    monkeypatch.setattr(memory_plan, "ModelShape", _SevenB)
    code = main(["narrate", str(video), "--model", str(tiny_model_dir), "--device", "cpu", "--quantize", "auto"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--quantize int4" in err and "Traceback" not in err


@pytest.mark.parametrize("free, says", [
    (None, "livecc: precision float32, auto: no GPU memory to fit on this device"),
    (15 * GIB, "livecc: precision int8, auto: bf16 does not fit, with the whole KV budget: weights "),
], ids=["cpu", "a 16 GB card"])
def test_the_load_note_says_which_precision_auto_chose_and_why(free, says, tiny_model_dir, tmp_path, monkeypatch,
                                                               capsys):
    video = write_video(tmp_path / "clip.mp4", seconds=1.0)
    monkeypatch.setattr(memory_plan, "free_memory", lambda device: free)  # the 7B plan on a card with this much free
    monkeypatch.setattr(memory_plan, "ModelShape", _SevenB)
    monkeypatch.setenv("LIVECC_QUANT_CACHE", str(tmp_path / "cache"))
    assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--device", "cpu", "--max-pixels", "20000"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("livecc: precision")]
    assert len(notes) == 1 and notes[0].startswith(says), notes


class _SevenB(ModelShape):
    """The planner reading the 7B shape whatever config it is handed (the tiny model fits anywhere)."""

    @classmethod
    def from_config(cls, config, **_):
        from transformers import Qwen2VLConfig

        return ModelShape.from_config(Qwen2VLConfig(text_config=QWEN2_VL_7B_TEXT, vision_config=QWEN2_VL_7B_VISION))


def test_int3_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["narrate", "clip.mp4", "--quantize", "int3"])
    assert exit_.value.code == 2 and "invalid choice: 'int3'" in capsys.readouterr().err


@pytest.mark.parametrize("device, triton_ok, fix", [("cuda", False, "pip install triton"),
                                                     ("mps", True, "--device cpu")])
def test_a_precision_the_device_cannot_run_names_the_fix(device, triton_ok, fix):
    with pytest.raises(QuantizeError) as err:
        quant.check_supported("int4", torch.device(device), triton_ok=triton_ok)
    assert fix in str(err.value) and "\n" not in str(err.value)


def _run_benchmark(script: str, *argv: str, monkeypatch) -> None:
    """The benchmark's own main, in this process (no second interpreter start-up)."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")


def test_the_probe_benchmark_smoke_runs(tmp_path, monkeypatch):
    _run_benchmark("probe_quant.py", "--smoke", "--out", str(tmp_path), monkeypatch=monkeypatch)
    assert (tmp_path / "quant_probe_smoke.json").exists()


def test_the_engine_benchmark_smoke_runs_the_quantized_rows(tmp_path, monkeypatch):
    _run_benchmark("bench_engine.py", "--smoke", "--quantize", "int4", "--out", str(tmp_path), monkeypatch=monkeypatch)
    assert "decode per token at ~8k context, in the stream, int4" in (tmp_path / "engine_smoke.md").read_text()


def test_a_second_load_reads_the_packed_weights_from_the_disk_cache(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import Qwen2VLForConditionalGeneration

    monkeypatch.setenv("LIVECC_QUANT_CACHE", str(tmp_path / "cache"))
    first = load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest("int4"))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    def no_float_load(*args, **kwargs):
        raise AssertionError("the float checkpoint was read although the cache holds the packed weights")

    monkeypatch.setattr(Qwen2VLForConditionalGeneration, "from_pretrained", no_float_load)
    second = load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest("int4"))
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert run_tokens(second, EagerRunner(second.model), n_chunks=2) == \
        run_tokens(first, EagerRunner(first.model), n_chunks=2)


def test_a_torn_cache_is_packed_again_and_a_failed_save_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch):
    import safetensors.torch

    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVECC_QUANT_CACHE", str(cache))
    first = load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest("int8"))
    (packed,) = cache.glob("*.safetensors")
    packed.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])  # an interrupted write
    again = load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest("int8"))
    assert run_tokens(again, EagerRunner(again.model), n_chunks=2) == \
        run_tokens(first, EagerRunner(first.model), n_chunks=2)
    assert packed.stat().st_size > 0 and load_model(str(tiny_model_dir), device="cpu",
                                                    quantize=QuantRequest("int8")).precision == "int8"

    def disk_full(*args, **kwargs):
        raise safetensors.SafetensorError("No space left on device (os error 28)")

    for f in cache.iterdir():
        f.unlink()
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    assert load_model(str(tiny_model_dir), device="cpu", quantize=QuantRequest("int8")).precision == "int8"
    assert list(cache.iterdir()) == []  # no half-written .part left behind


def test_a_plan_that_cuts_the_budget_below_what_the_settings_need_is_one_clear_error(tiny_loaded):
    import dataclasses

    from engine.errors import OutOfMemoryError
    from engine.session.session import SessionConfig, StreamingSession

    plan = MemoryPlan("int4", 4096, 4.3, 0.2, 0.5, 0.0, 5.0, "test")  # what fits a small card
    small = dataclasses.replace(tiny_loaded, plan=plan)
    assert StreamingSession(small, SessionConfig()).config.kv_budget == 4096  # cut to fit, and it works
    with pytest.raises(OutOfMemoryError, match="KV budget of only 4096 tokens.*--quantize int4"):
        StreamingSession(small, SessionConfig(answer_max_new_tokens=2048))


def test_the_settings_dialog_offers_and_keeps_the_precision(qtbot):
    from desktop_app.settings import AppSettings
    from desktop_app.settings_dialog import SettingsDialog

    dialog = SettingsDialog(AppSettings(quantize="int4"), devices=[])
    qtbot.addWidget(dialog)
    assert [dialog.quantize.itemText(i) for i in range(dialog.quantize.count())] == ["auto", "none", "int8", "int4"]
    assert dialog.result_settings().quantize == "int4"
    with pytest.raises(ValueError, match="quantize"):
        AppSettings(quantize="int3")


def test_the_plan_drops_the_prefill_graphs_before_any_kv_or_precision(shape_7b, tiny_loaded, monkeypatch):
    """An 8 GB card (7.5 GB free) keeps int4 with the whole KV budget by prefilling without CUDA
    graphs; 10 GB free has room for them; LIVECC_NO_PREFILL_GRAPH=1 never counts them. A session
    on such a plan turns the fast runner's prefill graphs off."""
    from dataclasses import replace

    from engine.runtime.fast import StaticRunner
    from engine.session.session import SessionConfig, StreamingSession

    small = plan_memory(shape_7b, "auto", int(7.5 * GIB), 16384, speech_on_gpu=False)
    assert (small.precision, small.kv_budget, small.prefill_graphs) == ("int4", 16384, False)
    assert "without CUDA graphs" in small.describe()
    roomy = plan_memory(shape_7b, "auto", 10 * GIB, 16384, speech_on_gpu=False)
    assert (roomy.precision, roomy.kv_budget, roomy.prefill_graphs) == ("int4", 16384, True)
    bf16 = plan_memory(shape_7b, "none", int(17.8 * GIB), 16384, speech_on_gpu=False)
    assert bf16.kv_budget == 16384 and not bf16.prefill_graphs  # weights and KV first
    monkeypatch.setenv("LIVECC_NO_PREFILL_GRAPH", "1")
    assert not plan_memory(shape_7b, "auto", 10 * GIB, 16384, speech_on_gpu=False).prefill_graphs
    runner = StaticRunner(tiny_loaded.model, 4096 + 8)
    runner._prefill_graphs = True
    session = StreamingSession(replace(tiny_loaded, plan=small), SessionConfig(kv_budget=4096), runner=runner)
    assert not session.runner._prefill_graphs
