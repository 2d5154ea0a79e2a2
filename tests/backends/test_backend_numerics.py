"""Independent numerical checks: plain-torch forwards written from docs/models.md, reading
the ORIGINAL tensor names straight from the safetensors files, against the policies.

Nothing here uses transformers or the backends' name tables, so a wrong rename, a
swapped norm, a missing bias or a missing logit shift shows up as a logit difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.llada import load_llada_policy
from dmpo.backends.tiny import write_tiny_dream, write_tiny_llada
from safetensors.torch import load_file


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out: dict[str, torch.Tensor] = {}
    for file in sorted(set(index["weight_map"].values())):
        out.update(load_file(str(folder / file)))
    return {k: v.float() for k, v in out.items()}


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE in float32; ``x [N, H, S, Dh]`` at positions 0..S-1."""
    s, dh = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh)  # [Dh/2]
    angles = torch.arange(s, dtype=torch.float32)[:, None] * inv_freq[None]  # [S, Dh/2]
    emb = torch.cat([angles, angles], dim=-1)  # [S, Dh]
    return x * emb.cos() + _rotate_half(x) * emb.sin()


def _attention(q, k, v, n_heads: int, n_kv: int, theta: float | None) -> torch.Tensor:
    """Bidirectional attention; ``q [N, S, H*Dh]``, ``k, v [N, S, Hkv*Dh]`` -> ``[N, S, H*Dh]``.
    ``theta`` None: no rotation (absolute positions were added to the input instead)."""
    n, s, _ = q.shape
    dh = q.shape[-1] // n_heads
    q = q.view(n, s, n_heads, dh).transpose(1, 2)  # [N, H, S, Dh]
    k = k.view(n, s, n_kv, dh).transpose(1, 2)  # [N, Hkv, S, Dh]
    v = v.view(n, s, n_kv, dh).transpose(1, 2)  # [N, Hkv, S, Dh]
    if theta is not None:
        q, k = _rope(q, theta), _rope(k, theta)
    k = k.repeat_interleave(n_heads // n_kv, dim=1)  # [N, H, S, Dh]
    v = v.repeat_interleave(n_heads // n_kv, dim=1)  # [N, H, S, Dh]
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [N, H, S, S], no causal mask
    return (weights @ v).transpose(1, 2).reshape(n, s, n_heads * dh)  # [N, S, H*Dh]


def llada_reference_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    """The original LLaDA block (docs/models.md): ``h = x + attn_out(attn(attn_norm(x)))``,
    ``out = h + ff_out(silu(ff_proj(y)) * up_proj(y))`` with ``y = ff_norm(h)``."""
    cfg = json.loads((folder / "config.json").read_text())
    w = _tensors(folder)
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"] if cfg.get("rope", True) else None
    x = w["model.transformer.wte.weight"][ids]  # [N, S, d]
    if theta is None:  # rope: false: LLaDA adds wpe at positions 0..S-1 to the token embeddings
        x = x + w["model.transformer.wpe.weight"][: ids.shape[1]]
    for i in range(cfg["n_layers"]):
        b = f"model.transformer.blocks.{i}."
        a = _rms_norm(x, w[b + "attn_norm.weight"], eps)
        q, k, v = (a @ w[b + f"{p}_proj.weight"].T for p in "qkv")
        x = x + _attention(q, k, v, cfg["n_heads"], cfg["n_kv_heads"], theta) @ w[b + "attn_out.weight"].T
        y = _rms_norm(x, w[b + "ff_norm.weight"], eps)
        gate = torch.nn.functional.silu(y @ w[b + "ff_proj.weight"].T)  # [N, S, hidden]
        x = x + (gate * (y @ w[b + "up_proj.weight"].T)) @ w[b + "ff_out.weight"].T
    x = _rms_norm(x, w["model.transformer.ln_f.weight"], eps)
    return x @ w["model.transformer.ff_out.weight"].T  # [N, S, V]


def dream_reference_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    """Qwen2 with q/k/v biases and grouped kv heads, then Dream's one-position logit shift."""
    cfg = json.loads((folder / "config.json").read_text())
    w = _tensors(folder)
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = w["model.embed_tokens.weight"][ids]  # [N, S, d]
    for i in range(cfg["num_hidden_layers"]):
        b = f"model.layers.{i}."
        a = _rms_norm(x, w[b + "input_layernorm.weight"], eps)
        q, k, v = (a @ w[b + f"self_attn.{p}_proj.weight"].T + w[b + f"self_attn.{p}_proj.bias"] for p in "qkv")
        heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        x = x + _attention(q, k, v, heads, kv, theta) @ w[b + "self_attn.o_proj.weight"].T
        y = _rms_norm(x, w[b + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(y @ w[b + "mlp.gate_proj.weight"].T)
        x = x + (gate * (y @ w[b + "mlp.up_proj.weight"].T)) @ w[b + "mlp.down_proj.weight"].T
    raw = _rms_norm(x, w["model.norm.weight"], eps) @ w["lm_head.weight"].T  # [N, S, V]: i predicts i+1
    return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)  # [N, S, V]: i predicts i


@pytest.fixture(scope="module")
def llada_gqa(tmp_path_factory) -> Path:
    # larger init so logits are far from uniform; grouped kv heads to exercise the general case
    return write_tiny_llada(tmp_path_factory.mktemp("num") / "llada", n_kv_heads=2, init_std=0.2, seed=3)


@pytest.fixture(scope="module")
def dream_big_init(tmp_path_factory) -> Path:
    return write_tiny_dream(tmp_path_factory.mktemp("num") / "dream", init_std=0.2, seed=4)


def _ids(n: int = 2, s: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 103, (n, s), generator=torch.Generator().manual_seed(seed))  # [N, S]


@pytest.mark.parametrize("fixture", ["tiny_llada", "llada_gqa", "llada_absolute"])
def test_llada_matches_plain_torch_forward_of_the_original_layout(fixture, request):
    folder = request.getfixturevalue(fixture)
    ids = _ids()
    expected = llada_reference_logits(folder, ids)
    with torch.no_grad():
        got = load_llada_policy(str(folder)).logits(ids, torch.ones_like(ids))
    assert (got - expected).abs().max() < 1e-4
    assert expected.abs().max() > 1e-2  # not a vacuous comparison


@pytest.mark.parametrize("fixture", ["tiny_dream", "dream_big_init"])
def test_dream_matches_plain_torch_forward_with_the_shift(fixture, request):
    folder = request.getfixturevalue(fixture)
    ids = _ids()
    expected = dream_reference_logits(folder, ids)
    with torch.no_grad():
        got = load_dream_policy(str(folder)).logits(ids, torch.ones_like(ids))
    assert (got - expected).abs().max() < 1e-4


def test_dream_shift_is_not_a_no_op(dream_big_init):
    # Forgetting the shift must fail the comparison above: unshifted logits differ a lot.
    ids = _ids()
    shifted = dream_reference_logits(dream_big_init, ids)
    unshifted = torch.cat([shifted[:, 1:], shifted[:, -1:]], dim=1)  # undo the shift (last row repeated)
    assert (shifted[:, 1:-1] - unshifted[:, 1:-1]).abs().max() > 1e-1


@pytest.mark.parametrize("fixture", ["llada_gqa", "llada_absolute"])
def test_llada_left_padded_row_matches_plain_torch_forward_alone(fixture, request):
    # Position ids count real tokens, so a left-padded row sees positions 0..7 like the row
    # alone (with absolute positions too, where an offset would change every logit).
    folder = request.getfixturevalue(fixture)
    ids = _ids(1, 8)
    expected = llada_reference_logits(folder, ids)  # [1, 8, V]
    policy = load_llada_policy(str(folder))
    padded = torch.cat([torch.full((1, 4), policy.pad_id), ids], dim=1)  # [1, 12]
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        got = policy.logits(padded, mask)[:, 4:]  # [1, 8, V]
    assert (got - expected).abs().max() < 1e-4


def test_llada_absolute_positions_are_used(llada_absolute):
    # Without RoPE, only wpe tells positions apart: reversing the input must change the
    # logits, or the comparison with the plain-torch forward would not test wpe at all.
    ids = _ids()
    cfg = json.loads((llada_absolute / "config.json").read_text())
    assert cfg["rope"] is False
    policy = load_llada_policy(str(llada_absolute))
    with torch.no_grad():
        got = policy.logits(ids, torch.ones_like(ids))  # [N, S, V]
        flipped = policy.logits(ids.flip(1), torch.ones_like(ids)).flip(1)  # [N, S, V]
    assert (got - flipped).abs().max() > 1e-2  # a permutation-equivariant model would give equal logits
