"""The memory plan for N concurrent sessions (issue 21, acceptance 4): pure arithmetic from the
7B config, no GPU. The KV pool is N slabs of the per-session budget, each session's peak cost
is its KV slab plus its repetition-penalty set, and N sessions that cannot fit even at
MIN_KV_TOKENS each are refused with one line saying how many do."""

from __future__ import annotations

import pytest
import torch

from engine.errors import OutOfMemoryError
from engine.model import memory_plan
from engine.model.memory_plan import MIN_KV_TOKENS, ModelShape, plan_memory
from engine.model.quantize import GiB, QuantizeError, QuantRequest

SEVEN_B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                    num_key_value_heads=4, vocab_size=152064)
SEVEN_B_VISION = dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, spatial_merge_size=2)


def seven_b() -> ModelShape:
    from transformers import Qwen2VLConfig

    return ModelShape.from_config(Qwen2VLConfig(text_config=SEVEN_B_TEXT, vision_config=SEVEN_B_VISION))


@pytest.fixture(scope="module")
def shape() -> ModelShape:
    return seven_b()


def _used(plan) -> float:
    return plan.weights_gb + plan.kv_gb + plan.activations_gb + plan.speech_gb


def test_a_session_costs_its_kv_slab_and_its_penalty_set(shape):
    """28 layers x 4 KV heads x 128 dims x K and V x bf16 per token; one bool per vocabulary id."""
    plan = plan_memory(shape, "none", 40 * GiB, 16384, speech_on_gpu=False)
    assert shape.kv_bytes_per_token == 28 * 4 * 128 * 2 * 2 and shape.seen_bytes == 152064
    assert plan.sessions == 1
    assert plan.kv_bytes_per_session == 16384 * shape.kv_bytes_per_token + 152064
    assert plan.kv_gb == pytest.approx(plan.kv_bytes_per_session / GiB)
    assert "(16384 tokens)" in plan.describe()


def test_the_kv_pool_is_one_slab_per_session_and_can_push_auto_down(shape):
    alone = plan_memory(shape, "auto", 40 * GiB, 16384, speech_on_gpu=False)
    many = plan_memory(shape, "auto", 40 * GiB, 16384, speech_on_gpu=False, sessions=32)
    assert (alone.precision, many.precision) == ("none", "int8")
    assert (many.sessions, many.kv_budget) == (32, 16384)  # the whole budget, each
    assert many.kv_bytes_per_session == alone.kv_bytes_per_session
    assert many.kv_gb == pytest.approx(32 * many.kv_bytes_per_session / GiB)
    assert _used(many) <= many.free_gb
    assert "32 sessions x 16384 tokens" in many.describe()


def test_every_session_gets_the_same_cut_budget_and_no_more_than_fits(shape):
    free = 15 * GiB
    plan = plan_memory(shape, "int4", free, 16384, speech_on_gpu=False, sessions=16)
    assert plan.precision == "int4" and MIN_KV_TOKENS <= plan.kv_budget < 16384 and plan.kv_budget % 1024 == 0
    assert "each to fit" in plan.describe()
    assert _used(plan) <= plan.free_gb
    fixed = _used(plan) - plan.kv_gb
    one_block_more = 16 * shape.session_bytes(plan.kv_budget + 1024) / GiB
    assert fixed + one_block_more > plan.free_gb  # the largest whole-1024 budget that fits


def test_too_many_sessions_are_refused_with_how_many_fit(shape):
    free = 20 * GiB
    with pytest.raises(OutOfMemoryError) as err:
        plan_memory(shape, "int4", free, 16384, speech_on_gpu=False, sessions=64)
    message = str(err.value)
    assert "\n" not in message and "64 sessions do not fit" in message
    at_most = int(message.split("at most ")[1].split()[0])
    assert "--quantize int4" not in message and f"use at most {at_most} sessions" in message
    fits = plan_memory(shape, "int4", free, 16384, speech_on_gpu=False, sessions=at_most)
    assert fits.kv_budget >= MIN_KV_TOKENS  # K fit at the floor or better ...
    with pytest.raises(OutOfMemoryError):  # ... and K + 1 do not
        plan_memory(shape, "int4", free, 16384, speech_on_gpu=False, sessions=at_most + 1)
    with pytest.raises(OutOfMemoryError, match="use --quantize int4 or at most"):
        plan_memory(shape, "none", free, 16384, speech_on_gpu=False, sessions=16)


def test_when_not_even_one_session_fits_the_model_error_stays(shape):
    with pytest.raises(QuantizeError, match="the model does not fit.*--quantize int4"):
        plan_memory(shape, "auto", 3 * GiB, 16384, speech_on_gpu=False, sessions=4)


def test_the_load_hook_plans_for_the_sessions_asked_for(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(memory_plan, "free_memory", lambda device: 80 * GiB)
    seven = seven_b()
    monkeypatch.setattr(memory_plan.ModelShape, "from_config", classmethod(lambda cls, config: seven))
    precision, plan = memory_plan.plan_for_folder(tiny_model_dir, torch.device("cuda"),
                                                  QuantRequest("none", 16384, sessions=8))
    assert (precision, plan.sessions, plan.kv_budget) == ("none", 8, 16384)
    with pytest.raises(QuantizeError, match="ask for at least 1"):
        QuantRequest(sessions=0)
