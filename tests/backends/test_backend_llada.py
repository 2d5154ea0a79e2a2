"""The llada backend: formats, conversion tables, saving, options, LoRA presets."""

from __future__ import annotations

import json
import re
import shutil
import time

import attrs
import pytest
import torch
from dmpo.backends import hf_checkpoint, llada
from dmpo.backends.family import ALL_PROJECTIONS
from dmpo.backends.llada import load_llada_policy
from dmpo.backends.tiny import write_tiny_llada
from safetensors import safe_open

from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.registry import build_registry
from dmpo_core.training.rollout import encode_prompts


def _batch(n: int = 2, s: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 103, (n, s), generator=torch.Generator().manual_seed(seed))  # [N, S]
    return ids, torch.ones_like(ids)


def _logits(policy, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return policy.logits(ids, mask)


def _stored_names(folder) -> set[str]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return set(index["weight_map"])


# -- conversion tables ---------------------------------------------------------------------


def test_name_table_round_trips_every_llama_tensor():
    config = llada.llada_config_to_llama({"d_model": 64, "n_layers": 3, "n_heads": 4, "vocab_size": 103}, "cfg")
    names = hf_checkpoint.expected_shapes(llada.LLADA, config)
    for name in names:
        original = llada.LLADA.to_original_name(name)
        assert original is not None and original.startswith("model.transformer."), name
        assert llada.LLADA.to_converted_name(original) == name
    assert (
        llada.LLADA.to_converted_name("model.transformer.blocks.0.ff_proj.weight")
        == "model.layers.0.mlp.gate_proj.weight"
    )
    assert llada.LLADA.to_converted_name("model.transformer.ff_out.weight") == "lm_head.weight"
    assert llada.LLADA.to_converted_name("model.transformer.blocks.0.q_norm.weight") is None


def test_key_mapping_regexes_agree_with_the_name_table():
    # the regexes handed to from_pretrained rename exactly as the table does
    for original, converted in llada.TENSOR_NAMES.pairs:
        name = original.format(i=17)
        renamed = name
        for pattern, target in llada.LLADA.key_mapping().items():
            renamed = re.sub(pattern, target, renamed)
        assert renamed == converted.format(i=17)


def test_eight_b_config_converts_to_the_documented_llama_sizes():
    raw = {
        "model_type": "llada",
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "n_kv_heads": 32,
        "mlp_hidden_size": 12288,
        "mlp_ratio": 4,
        "vocab_size": 126464,
        "embedding_size": 126464,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "max_sequence_length": 4096,
        "block_type": "llama",
        "activation_type": "silu",
        "layer_norm_type": "rms",
        "include_bias": False,
        "rope": True,
        "alibi": False,
        "weight_tying": False,
        "scale_logits": False,
    }
    config = llada.llada_config_to_llama(raw, "config.json")
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (4096, 12288, 32)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (32, 32, 128)
    assert config.vocab_size == 126464 and config.rms_norm_eps == 1e-5
    assert config.rope_parameters["rope_theta"] == 500000.0 and config.is_causal is False
    assert not config.tie_word_embeddings and not config.attention_bias
    back = llada.llama_config_to_llada(config, raw, "bfloat16")
    assert {k: back[k] for k in raw} == raw


# -- loading -------------------------------------------------------------------------------


def test_original_and_converted_layouts_give_identical_logits(tiny_llada, tiny_llada_converted):
    ids, mask = _batch()
    original = load_llada_policy(str(tiny_llada))
    converted = load_llada_policy(str(tiny_llada_converted))
    assert original.source.format == "original" and converted.source.format == "converted"
    assert torch.equal(_logits(original, ids, mask), _logits(converted, ids, mask))


def test_tiny_sharded_checkpoint_loads_in_well_under_a_few_seconds(tiny_llada):
    assert len(list(tiny_llada.glob("model-*.safetensors"))) == 2
    load_llada_policy(str(tiny_llada))  # warm the imports
    start = time.perf_counter()
    load_llada_policy(str(tiny_llada))
    assert time.perf_counter() - start < 3.0


def test_backends_are_registered_through_the_entry_points_with_their_options_class(tiny_llada):
    from dmpo.backends.hf_policy import HFBackendOptions

    registry = build_registry()
    assert {"llada", "dream"} <= set(registry.names("backend"))
    entry = registry.get("backend", "llada")
    assert entry.options is HFBackendOptions and registry.get("backend", "dream").options is HFBackendOptions
    assert entry.resolve_model("builtin:sudoku-tiny").endswith("sudoku-tiny")  # the shipped folder
    assert entry.resolve_model(str(tiny_llada)) == str(tiny_llada)  # anything else unchanged
    # what the host does: validate the options (dotted paths), then factory(model=..., **fields)
    kwargs = registry.validate("backend", "llada", {"reference": False}, path="backend_options")
    assert set(kwargs) == {f.name for f in attrs.fields(HFBackendOptions)}
    policy = entry.factory(model=entry.resolve_model(str(tiny_llada)), **kwargs)
    assert policy.mask_id == 2 and policy.eos_id == 0 and policy._reference_model is None


def test_backend_options_are_checked_with_their_dotted_path_before_loading():
    registry = build_registry()
    with pytest.raises(ConfigError) as info:
        registry.validate("backend", "dream", {"dtype": "float64", "lora_r": 0, "colour": 1}, path="backend_options")
    problems = info.value.problems
    assert "backend_options.dtype='float64': use one of float32, bfloat16, float16" in problems
    assert "backend_options.lora_r=0: use a positive integer" in problems
    assert any(p.startswith("backend_options.colour: unknown key") for p in problems)
    with pytest.raises(ConfigError, match="backend_options.*load_in_4bit=True needs LoRA"):
        registry.validate("backend", "llada", {"load_in_4bit": True}, path="backend_options")


def test_special_ids_come_from_the_checkpoint(tiny_llada):
    policy = load_llada_policy(str(tiny_llada))
    tok = policy.tokenizer
    assert policy.mask_id == tok.convert_tokens_to_ids("<|mdm_mask|>")
    assert policy.eos_id == policy.pad_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert policy.eot_id == tok.convert_tokens_to_ids("<|eot_id|>")
    assert policy.vocab_size == 103


def test_bfloat16_logits_are_close_to_float32(tiny_llada):
    ids, mask = _batch()
    full = _logits(load_llada_policy(str(tiny_llada)), ids, mask)
    half = _logits(load_llada_policy(str(tiny_llada), dtype="bfloat16"), ids, mask)
    assert half.dtype == torch.bfloat16
    assert (half.float() - full).abs().max() < 0.05


def test_eager_and_sdpa_attention_agree(tiny_llada):
    ids, mask = _batch()
    mask[0, :3] = 0  # left padding in row 0
    sdpa = _logits(load_llada_policy(str(tiny_llada)), ids, mask)
    eager = _logits(load_llada_policy(str(tiny_llada), attn_implementation="eager"), ids, mask)
    assert (sdpa - eager)[:, 3:].abs().max() < 1e-5


def test_gradient_checkpointing_gives_the_same_gradients(tiny_llada):
    ids, mask = _batch()
    grads = []
    for checkpointing in (False, True):
        policy = load_llada_policy(str(tiny_llada), gradient_checkpointing=checkpointing, reference=False).train()
        assert policy.model.is_activation_checkpointing == checkpointing
        policy.logits(ids, mask).logsumexp(-1).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.trainable_parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 1e-6


def test_single_file_checkpoint_loads(tiny_llada, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "single"
    shutil.copytree(tiny_llada, folder)
    tensors = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        tensors.update(load_file(str(shard)))
        shard.unlink()
    (folder / "model.safetensors.index.json").unlink()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ids, mask = _batch()
    assert torch.equal(
        _logits(load_llada_policy(str(folder)), ids, mask), _logits(load_llada_policy(str(tiny_llada)), ids, mask)
    )


def test_policy_without_reference_says_so(tiny_llada):
    policy = load_llada_policy(str(tiny_llada), reference=False)
    ids, mask = _batch()
    with pytest.raises(InvalidArgumentError, match="reference=True"):
        policy.reference_logits(ids, mask)
    with pytest.raises(InvalidArgumentError, match="reference=True"):
        policy.sync_reference()


def test_weight_tied_checkpoint_loads(tmp_path):
    folder = write_tiny_llada(tmp_path / "tied", extra_config={"weight_tying": True})
    assert "model.transformer.ff_out.weight" not in _stored_names(folder)
    policy = load_llada_policy(str(folder))
    assert policy.model.lm_head.weight.data_ptr() == policy.model.model.embed_tokens.weight.data_ptr()


def test_padding_mask_is_honoured_unlike_the_original_code(tiny_llada):
    # The original remote code attends to left padding; we do not. On this tiny model the
    # difference on the real positions is large (about 0.27 at logit scale 0.6).
    policy = load_llada_policy(str(tiny_llada))
    ids, _ = _batch(1, 8)
    padded = torch.cat([torch.full((1, 4), policy.pad_id), ids], dim=1)  # [1, 12]
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        honoured = policy.logits(padded, mask)[:, 4:]
        alone = policy.logits(ids, torch.ones_like(ids))
        ignored = policy.model(input_ids=padded).logits[:, 4:]  # no mask, positions 0..11
    assert (honoured - alone).abs().max() < 1e-5
    assert (ignored - honoured).abs().max() > 1e-2


# -- saving --------------------------------------------------------------------------------


def test_save_writes_the_original_layout_by_default(tiny_llada, tmp_path):
    policy = load_llada_policy(str(tiny_llada))
    policy.save(str(tmp_path / "out"), shards=3)
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llada" and config["d_model"] == 64 and config["mask_token_id"] == 2
    assert _stored_names(out) == _stored_names(tiny_llada)
    assert len(list(out.glob("model-0000?-of-00003.safetensors"))) == 3
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    with safe_open(str(out / "model-00001-of-00003.safetensors"), "pt") as handle:
        assert all(k.startswith("model.transformer.") for k in handle.keys())  # noqa: SIM118


def test_converted_save_loads_in_stock_transformers(tiny_llada, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = load_llada_policy(str(tiny_llada))
    policy.save(str(tmp_path / "llama"), format="converted")
    stock = AutoModelForCausalLM.from_pretrained(str(tmp_path / "llama"))
    assert type(stock).__name__ == "LlamaForCausalLM" and stock.config.is_causal is False
    assert "position_embedding_type" not in json.loads((tmp_path / "llama" / "config.json").read_text())
    ids, mask = _batch()
    with torch.no_grad():
        assert (stock(input_ids=ids).logits - _logits(policy, ids, mask)).abs().max() < 1e-5
    assert AutoTokenizer.from_pretrained(str(tmp_path / "llama")).mask_token == "<|mdm_mask|>"


def test_absolute_positions_save_and_reload_in_the_original_layout_only(llada_absolute, tmp_path):
    policy = load_llada_policy(str(llada_absolute))
    policy.save(str(tmp_path / "out"))
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["rope"] is False and config["max_sequence_length"] == 32
    assert "model.transformer.wpe.weight" in _stored_names(tmp_path / "out")
    ids, mask = _batch()
    with torch.no_grad():
        before = _logits(policy, ids, mask)
        assert (_logits(load_llada_policy(str(tmp_path / "out")), ids, mask) - before).abs().max() < 1e-6
    with pytest.raises(InvalidArgumentError, match="format='original'"):
        policy.save(str(tmp_path / "llama"), format="converted")
    assert not (tmp_path / "llama").exists()
    too_long = torch.full((1, 33), 7)
    with pytest.raises(InvalidArgumentError, match="absolute position embeddings for 32"):
        policy.logits(too_long, torch.ones_like(too_long))


def test_save_replaces_a_folder_atomically_and_leaves_no_temp_folders(tiny_llada, tmp_path, monkeypatch):
    policy = load_llada_policy(str(tiny_llada))
    target = tmp_path / "out"
    policy.save(str(target))
    policy.save(str(target), format="converted")  # replaces the first save
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_checkpoint, "write_shards", broken)
    with pytest.raises(OSError, match="disk full"):
        policy.save(str(target))
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- LoRA ----------------------------------------------------------------------------------


def _adapted(policy) -> set[str]:
    return {
        name.split(".")[-1]
        for name, module in policy.model.named_modules()
        if hasattr(module, "lora_A") and module.lora_A
    }


def test_lora_presets_adapt_the_documented_modules(tiny_llada):
    assert _adapted(load_llada_policy(str(tiny_llada), lora="papers", lora_r=2)) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "up_proj",
    }
    assert _adapted(load_llada_policy(str(tiny_llada), lora="all", lora_r=2)) == set(ALL_PROJECTIONS)


def test_lora_reference_is_the_base_model_and_only_adapters_train(tiny_llada):
    ids, mask = _batch()
    base = _logits(load_llada_policy(str(tiny_llada)), ids, mask)
    policy = load_llada_policy(str(tiny_llada), lora="all", lora_r=4)
    assert all("lora_" in name for name, p in policy.model.named_parameters() if p.requires_grad)
    assert len(list(policy.trainable_parameters())) == 2 * 7 * 2  # A and B, 7 projections, 2 layers
    assert torch.equal(policy.reference_logits(ids, mask), base)
    assert policy.lora.r == 4 and policy.lora.alpha == 64.0 and policy.lora.dropout == 0.05
    assert policy.options.lora == "all" and policy.options.lora_r == 4  # the options as the user gave them


def test_lora_save_merges_the_adapter_and_keeps_the_live_model(tiny_llada, tmp_path):
    policy = load_llada_policy(str(tiny_llada), lora="papers", lora_r=4, lora_alpha=8)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids, mask = _batch()
    expected = _logits(policy, ids, mask)
    policy.save(str(tmp_path / "merged"))
    assert _stored_names(tmp_path / "merged") == _stored_names(tiny_llada)  # no adapter tensors
    assert (_logits(load_llada_policy(str(tmp_path / "merged")), ids, mask) - expected).abs().max() < 1e-5
    assert torch.equal(_logits(policy, ids, mask), expected)


# -- prompts -------------------------------------------------------------------------------


def test_the_checkpoint_tokenizer_carries_its_chat_template_and_prompts_are_left_padded(tiny_llada):
    # prompts are the task's business (dmpo_core.training.rollout); the backend only ships the tokenizer
    tok = load_llada_policy(str(tiny_llada), reference=False).tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert (
        text == "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids, mask = encode_prompts(tok, ["a", "abc"], 0)  # [2, 3]
    assert ids.tolist()[0][:2] == [0, 0] and mask.tolist() == [[0, 0, 1], [1, 1, 1]]
    assert tok.decode(ids[1]) == "abc"


@pytest.mark.gpu
def test_bfloat16_on_cuda_passes_the_contract(tiny_llada):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    import functools

    from dmpo_core.testing.backend_contract import ContractSettings, run_backend_contract

    load = functools.partial(load_llada_policy, dtype="bfloat16", device="cuda", lora="papers", lora_r=4)
    run_backend_contract(load, tiny_llada, settings=ContractSettings(atol=0.05, dtype=torch.bfloat16))
