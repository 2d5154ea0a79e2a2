"""The dream backend, and what transformers 5 does with ``is_causal=False`` and left padding."""

from __future__ import annotations

import json

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.hf_policy import shift_logits
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM


def _stock(cls, config_cls, impl: str):
    torch.manual_seed(0)
    config = config_cls(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        is_causal=False,
        attn_implementation=impl,
    )
    return cls(config).eval()


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize(
    "classes", [(Qwen2ForCausalLM, Qwen2Config), (LlamaForCausalLM, LlamaConfig)], ids=["qwen2", "llama"]
)
def test_transformers_honours_is_causal_false(classes, impl):
    # Pins the transformers behaviour both backends rely on: with is_causal=False a later
    # token changes an earlier position's logits, with no mask, an all-ones mask, or padding.
    model = _stock(*classes, impl)
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0))
    other = ids.clone()
    other[0, -1] = (ids[0, -1] + 1) % 50
    with torch.no_grad():
        for mask in (None, torch.ones_like(ids)):
            a = model(input_ids=ids, attention_mask=mask).logits
            b = model(input_ids=other, attention_mask=mask).logits
            assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4
        padded_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
        a = model(input_ids=ids, attention_mask=padded_mask).logits
        b = model(input_ids=other, attention_mask=padded_mask).logits
        assert (a[0, 2] - b[0, 2]).abs().max() > 1e-4


@pytest.mark.parametrize(
    "classes", [(Qwen2ForCausalLM, Qwen2Config), (LlamaForCausalLM, LlamaConfig)], ids=["qwen2", "llama"]
)
def test_left_padding_with_cumsum_position_ids_equals_the_row_alone(classes):
    # transformers 5.23 does NOT derive position ids from the mask (it uses arange), so the
    # policy passes cumsum(mask) - 1. With RoPE and masked padding the constant offset of
    # arange only changes rounding; with cumsum - 1 the padded row equals the row alone.
    model = _stock(*classes, "sdpa")
    ids = torch.randint(1, 50, (1, 6), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        alone = model(input_ids=ids).logits
        with_positions = model(input_ids=padded, attention_mask=mask, position_ids=positions).logits[:, 3:]
        with_arange = model(input_ids=padded, attention_mask=mask).logits[:, 3:]
    assert torch.allclose(with_positions, alone, atol=1e-6)
    assert torch.allclose(with_arange, alone, atol=1e-4)


def test_policy_logits_are_the_model_logits_shifted_by_one(tiny_dream):
    policy = load_dream_policy(str(tiny_dream))
    ids = torch.randint(0, 103, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        raw = policy.model(input_ids=ids).logits  # [N, S, V]: i predicts i+1
        got = policy.logits(ids, torch.ones_like(ids))  # [N, S, V]: i predicts i
        last = policy.logits(ids, torch.ones_like(ids), last=4)
    assert torch.allclose(got[:, 1:], raw[:, :-1], atol=1e-6)
    assert torch.allclose(got[:, 0], raw[:, 0], atol=1e-6)
    assert torch.allclose(last, raw[:, -5:-1], atol=1e-6)


def test_shift_keeps_the_first_real_token_own_logits_after_left_padding():
    raw = torch.arange(5.0).view(1, 5, 1).repeat(2, 1, 1)  # [2, 5, 1]: the value is the position
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert shift_logits(raw, mask)[:, :, 0].tolist() == [[0, 0, 1, 2, 3], [0, 0, 2, 2, 3]]
    assert shift_logits(raw[:, -3:], mask)[:, :, 0].tolist() == [[2, 3], [2, 3]]  # last 2 positions


def test_dream_saves_both_formats(tiny_dream, tmp_path):
    from transformers import AutoModelForCausalLM

    policy = load_dream_policy(str(tiny_dream))
    policy.save(str(tmp_path / "dream"))
    config = json.loads((tmp_path / "dream" / "config.json").read_text())
    assert config["model_type"] == "Dream" and config["num_key_value_heads"] == 2 and config["mask_token_id"] == 2
    policy.save(str(tmp_path / "qwen2"), format="converted")
    stock = AutoModelForCausalLM.from_pretrained(str(tmp_path / "qwen2"))
    assert type(stock).__name__ == "Qwen2ForCausalLM" and stock.config.is_causal is False
    ids = torch.randint(0, 103, (1, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = policy.logits(ids, torch.ones_like(ids))
        assert torch.allclose(shift_logits(stock(input_ids=ids).logits, torch.ones_like(ids)), ours, atol=1e-5)
        for folder in ("dream", "qwen2"):
            reloaded = load_dream_policy(str(tmp_path / folder))
            assert torch.allclose(reloaded.logits(ids, torch.ones_like(ids)), ours, atol=1e-6)


def test_dream_has_qkv_biases_and_grouped_kv_heads(tiny_dream):
    policy = load_dream_policy(str(tiny_dream), reference=False)
    attention = policy.model.model.layers[0].self_attn
    assert attention.q_proj.bias is not None and attention.o_proj.bias is None
    assert attention.k_proj.weight.shape == (2 * 16, 64)  # 2 kv heads of 16


def test_dream_papers_preset_adapts_every_projection(tiny_dream):
    policy = load_dream_policy(str(tiny_dream), lora="papers", lora_r=2)
    adapted = {n.split(".")[-1] for n, m in policy.model.named_modules() if hasattr(m, "lora_A") and m.lora_A}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
