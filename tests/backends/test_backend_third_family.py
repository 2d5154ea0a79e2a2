"""A third model family is one module plus one registration: shown with a made-up family.

``toy`` is defined entirely in this module, as a plugin's family file would be: its own
original checkpoint layout (config keys ``width``/``depth`` ..., tensors ``toy.blocks.N.*``),
converted at load time onto the stock ``transformers.Qwen3ForCausalLM`` (q/k norms, grouped
key/value heads) run with ``is_causal=False``. Nothing in ``backends/`` knows it: it is
registered through the same hook as llada and dream, checked against the same
:class:`HFBackendOptions`, written by the family-neutral tiny writer and loaded through the
registry exactly as the host loads a backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from dmpo.backends import builtin
from dmpo.backends.family import Family, SpecialTokenNames, TensorNames, register_family
from dmpo.backends.hf_policy import HFBackendOptions, HFPolicy, load_hf_policy
from dmpo.backends.tiny import write_tiny_checkpoint

import dmpo_core
from dmpo_core.errors import CheckpointError, ConfigError
from dmpo_core.registry import build_registry
from dmpo_core.testing.backend_contract import run_backend_contract

# -- the family file a plugin author would write ---------------------------------------------

TOY_TENSOR_NAMES = TensorNames(
    (
        ("toy.embed.weight", "model.embed_tokens.weight"),
        ("toy.final_norm.weight", "model.norm.weight"),
        ("toy.head.weight", "lm_head.weight"),
        ("toy.blocks.{i}.norm1.weight", "model.layers.{i}.input_layernorm.weight"),
        ("toy.blocks.{i}.attn.q.weight", "model.layers.{i}.self_attn.q_proj.weight"),
        ("toy.blocks.{i}.attn.k.weight", "model.layers.{i}.self_attn.k_proj.weight"),
        ("toy.blocks.{i}.attn.v.weight", "model.layers.{i}.self_attn.v_proj.weight"),
        ("toy.blocks.{i}.attn.out.weight", "model.layers.{i}.self_attn.o_proj.weight"),
        ("toy.blocks.{i}.attn.q_norm.weight", "model.layers.{i}.self_attn.q_norm.weight"),
        ("toy.blocks.{i}.attn.k_norm.weight", "model.layers.{i}.self_attn.k_norm.weight"),
        ("toy.blocks.{i}.norm2.weight", "model.layers.{i}.post_attention_layernorm.weight"),
        ("toy.blocks.{i}.mlp.gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
        ("toy.blocks.{i}.mlp.up.weight", "model.layers.{i}.mlp.up_proj.weight"),
        ("toy.blocks.{i}.mlp.down.weight", "model.layers.{i}.mlp.down_proj.weight"),
    )
)
_SIZES = {"width": "hidden_size", "depth": "num_hidden_layers", "heads": "num_attention_heads",
          "kv_heads": "num_key_value_heads", "ffn": "intermediate_size", "vocab": "vocab_size"}
"""Original config key -> Qwen3 config key."""


def toy_config_to_qwen3(raw: Mapping[str, Any], where: str) -> Any:
    """The original toy config.json -> a bidirectional ``Qwen3Config``."""
    from transformers import Qwen3Config

    missing = [k for k in _SIZES if k not in raw]
    if missing:
        raise CheckpointError(where, f"missing key(s) {missing}")
    sizes = {q: int(raw[k]) for k, q in _SIZES.items()}
    return Qwen3Config(**sizes, head_dim=sizes["hidden_size"] // sizes["num_attention_heads"], rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
                       pad_token_id=raw.get("pad_token_id"), eos_token_id=raw.get("eos_token_id"),
                       bos_token_id=raw.get("bos_token_id"), use_cache=False, is_causal=False)


def qwen3_config_to_toy(config: Any, template: Mapping[str, Any] | None, dtype: str) -> dict[str, Any]:
    """The inverse of :func:`toy_config_to_qwen3` (keys of ``template`` kept)."""
    return {**(template or {}), "model_type": "toy-dllm", "torch_dtype": dtype,
            **{k: getattr(config, q) for k, q in _SIZES.items()}}


TOY = register_family(
    Family(
        name="toy",
        original_model_types=("toy-dllm",),
        converted_model_type="qwen3",
        model_class_path="transformers:Qwen3ForCausalLM",
        config_class_path="transformers:Qwen3Config",
        converted_architecture="Qwen3ForCausalLM",
        shift_logits=False,
        tokens=SpecialTokenNames(mask=("<|mdm_mask|>",), eot=("<|eot_id|>",)),
        papers_lora=("q_proj", "v_proj"),
        to_config=toy_config_to_qwen3,
        from_config=qwen3_config_to_toy,
        tensor_names=TOY_TENSOR_NAMES,
    )
)


def load_toy_policy(model: str, **options: Any) -> HFPolicy:
    """Load a toy checkpoint; ``options`` are :class:`HFBackendOptions` fields."""
    return load_hf_policy(TOY, model, HFBackendOptions.from_options(options))


class ToyPlugin:
    """The one registration (a plugin module would hold this hook at module level)."""

    @staticmethod
    @dmpo_core.hookimpl
    def register_backends(register: Any) -> None:
        register("toy", load_toy_policy, options=HFBackendOptions, resolve_model=builtin.resolve,
                 help="the made-up toy family on stock Qwen3")


# -- the tests ---------------------------------------------------------------------------------

RAW = {"model_type": "toy-dllm", "width": 32, "depth": 2, "heads": 4, "kv_heads": 2, "ffn": 64, "vocab": 103}


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "toy", TOY, RAW, seed=5, init_std=0.2)


@pytest.fixture(scope="module")
def registry():
    return build_registry(plugins=[("toy-family", ToyPlugin())], entry_points=False)


def _load(registry, model: str, options: Mapping[str, Any]) -> HFPolicy:
    """What the host does: validate the options (dotted paths), resolve the model, call the factory."""
    entry = registry.get("backend", "toy")
    kwargs = registry.validate("backend", "toy", options, path="backend_options")
    return entry.factory(model=entry.resolve_model(model), **kwargs)


def test_the_tiny_writer_stores_the_families_own_original_layout(toy_checkpoint):
    config = json.loads((toy_checkpoint / "config.json").read_text())
    assert config["model_type"] == "toy-dllm" and config["width"] == 32 and config["mask_token_id"] == 2
    names = set(json.loads((toy_checkpoint / "model.safetensors.index.json").read_text())["weight_map"])
    assert all(n.startswith("toy.") for n in names) and "toy.blocks.1.attn.q_norm.weight" in names


def test_a_third_family_loads_through_the_registry_and_runs_on_the_stock_class(registry, toy_checkpoint):
    policy = _load(registry, str(toy_checkpoint), {"reference": False})
    assert type(policy.model).__name__ == "Qwen3ForCausalLM" and policy.model.config.is_causal is False
    assert (policy.mask_id, policy.eos_id, policy.vocab_size) == (2, 0, 103)
    ids = torch.randint(7, 103, (2, 9), generator=torch.Generator().manual_seed(0))  # [2, 9]
    with torch.no_grad():
        assert policy.logits(ids, torch.ones_like(ids)).shape == (2, 9, 103)


def test_a_third_family_passes_the_backend_contract(toy_checkpoint, tmp_path):
    ran = run_backend_contract(load_toy_policy, toy_checkpoint, tmp_dir=tmp_path)
    assert "save_load_round_trip" in ran and "bidirectional" in ran and "left_padding" in ran


def test_a_third_family_gets_the_shared_options_checks_and_lora(registry, toy_checkpoint):
    with pytest.raises(ConfigError) as info:
        registry.validate("backend", "toy", {"dtype": "float64", "lora_alpha": -1.0}, path="backend_options")
    assert info.value.problems == [
        "backend_options.dtype='float64': use one of float32, bfloat16, float16",
        "backend_options.lora_alpha=-1.0: use a positive number",
    ]
    policy = _load(registry, str(toy_checkpoint), {"lora": "papers", "lora_r": 2})
    adapted = {n.split(".")[-1] for n, m in policy.model.named_modules() if hasattr(m, "lora_A") and m.lora_A}
    assert adapted == {"q_proj", "v_proj"}  # the family's own "papers" preset


def test_the_other_backends_name_a_third_family_checkpoint(toy_checkpoint):
    from dmpo.backends.llada import load_llada_policy

    with pytest.raises(CheckpointError, match="looks like a toy checkpoint: use the 'toy' backend"):
        load_llada_policy(str(toy_checkpoint))
