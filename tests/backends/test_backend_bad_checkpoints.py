"""Bad checkpoints give ONE clear CheckpointError naming the file and the problem, and
loading never writes into the user's folder (hash before == hash after)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.llada import load_llada_policy
from dmpo.backends.tiny import make_tiny_tokenizer
from safetensors.torch import load_file, save_file

from dmpo_core.errors import CheckpointError, ConfigError, InvalidArgumentError


@pytest.fixture
def ckpt(tiny_llada, tmp_path) -> Path:
    """A private copy of the tiny LLaDA checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_llada, tmp_path / "ckpt"))


def _load_error(folder: Path, digest, loader=load_llada_policy) -> CheckpointError:
    """Load ``folder``, expect a CheckpointError, check the folder is unchanged and the
    message is a single line."""
    before = digest(folder) if folder.exists() else None
    with pytest.raises(CheckpointError) as info:
        loader(str(folder))
    if before is not None:
        assert digest(folder) == before, "loading wrote into the checkpoint folder"
    message = str(info.value)
    assert "\n" not in message and len(message) < 1200, message
    return info.value


def _index(folder: Path) -> dict:
    return json.loads((folder / "model.safetensors.index.json").read_text())


def _rewrite_shard(folder: Path, tensor_name: str, change) -> str:
    """Apply ``change(dict_of_tensors)`` to the shard holding ``tensor_name``; return the shard name."""
    index = _index(folder)
    shard = index["weight_map"][tensor_name]
    tensors = load_file(str(folder / shard))
    change(tensors)
    save_file(tensors, str(folder / shard), metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard} | dict.fromkeys(tensors, shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return shard


def test_good_checkpoint_loads_without_writing_into_the_folder(tiny_llada, tiny_dream, digest):
    for folder, loader in ((tiny_llada, load_llada_policy), (tiny_dream, load_dream_policy)):
        before = digest(folder)
        policy = loader(str(folder), lora="papers", lora_r=2)
        policy.logits(torch.zeros((1, 3), dtype=torch.long), torch.ones((1, 3), dtype=torch.long))
        assert digest(folder) == before


def test_missing_config_json_is_named(ckpt, digest):
    (ckpt / "config.json").unlink()
    err = _load_error(ckpt, digest)
    assert err.path.endswith("config.json") and "missing" in err.problem


def test_config_that_is_not_json_is_named(ckpt, digest):
    (ckpt / "config.json").write_text("{not json")
    err = _load_error(ckpt, digest)
    assert err.path.endswith("config.json") and "JSON" in err.problem


def test_folder_without_weights_is_named(ckpt, digest):
    for shard in ckpt.glob("*.safetensors"):
        shard.unlink()
    (ckpt / "model.safetensors.index.json").unlink()
    err = _load_error(ckpt, digest)
    assert "no weights" in err.problem


def test_pytorch_bin_weights_get_a_conversion_hint(ckpt, digest):
    for shard in ckpt.glob("*.safetensors"):
        shard.unlink()
    (ckpt / "model.safetensors.index.json").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"\0")
    err = _load_error(ckpt, digest)
    assert "pytorch_model.bin" in err.problem and "safetensors" in err.problem


def test_index_naming_a_missing_shard_is_named(ckpt, digest):
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    err = _load_error(ckpt, digest)
    assert err.path.endswith("model.safetensors.index.json") and "model-00002-of-00002.safetensors" in err.problem


def test_corrupt_shard_is_named(ckpt, digest):
    (ckpt / "model-00001-of-00002.safetensors").write_bytes(b"garbage, not a safetensors header")
    err = _load_error(ckpt, digest)
    assert err.path.endswith("model-00001-of-00002.safetensors") and "header" in err.problem


def test_unknown_model_type_is_named(ckpt, digest):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    err = _load_error(ckpt, digest)
    assert err.path.endswith("config.json") and "unknown model_type 'gpt2'" in err.problem


def test_wrong_backend_gets_a_hint(tiny_llada, tiny_dream, digest):
    err = _load_error(tiny_llada, digest, loader=load_dream_policy)
    assert "use the 'llada' backend" in err.problem
    err = _load_error(tiny_dream, digest, loader=load_llada_policy)
    assert "use the 'dream' backend" in err.problem


def test_unsupported_llada_feature_is_named(ckpt, digest):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"alibi": True, "include_bias": True}))
    err = _load_error(ckpt, digest)
    assert "alibi=True" in err.problem and "include_bias=True" in err.problem  # both reported at once


def test_missing_tensor_is_named(ckpt, digest):
    name = "model.transformer.blocks.1.up_proj.weight"
    _rewrite_shard(ckpt, name, lambda t: t.pop(name))
    err = _load_error(ckpt, digest)
    assert err.path.endswith("model.safetensors.index.json")
    assert name in err.problem and "not in model.safetensors.index.json" in err.problem


def test_unexpected_tensor_is_named_with_its_shard(ckpt, digest):
    name = "model.transformer.blocks.0.q_proj.weight"
    extra = "model.transformer.blocks.0.q_norm.weight"
    shard = _rewrite_shard(ckpt, name, lambda t: t.update({extra: torch.ones(64)}))
    err = _load_error(ckpt, digest)
    assert err.path.endswith(shard) and extra in err.problem and "unexpected" in err.problem


def test_mismatched_shape_is_named_with_both_shapes(ckpt, digest):
    name = "model.transformer.blocks.0.k_proj.weight"
    shard = _rewrite_shard(ckpt, name, lambda t: t.update({name: torch.zeros(32, 64)}))
    err = _load_error(ckpt, digest)
    assert err.path.endswith(shard)
    assert name in err.problem and "[32, 64]" in err.problem and "[64, 64]" in err.problem


def test_config_that_disagrees_with_the_weights_is_reported_in_full(ckpt, digest):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"n_layers": 3}))
    err = _load_error(ckpt, digest)
    assert "model.transformer.blocks.2.q_proj.weight" in err.problem and "9 tensor(s)" in err.problem


def _tokenizer_without_mask(folder: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|mdm_mask|>"]
    data["model"]["vocab"] = {k: v for k, v in data["model"]["vocab"].items() if k != "<|mdm_mask|>"}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        cfg = json.loads((folder / name).read_text())
        cfg.pop("mask_token", None)
        (folder / name).write_text(json.dumps(cfg))


def test_tokenizer_without_mask_token_is_named(ckpt, digest):
    _tokenizer_without_mask(ckpt)
    err = _load_error(ckpt, digest)
    assert err.path.endswith("tokenizer_config.json") and "no mask token" in err.problem


def test_folder_without_tokenizer_is_named(ckpt, digest):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (ckpt / name).unlink()
    err = _load_error(ckpt, digest)
    assert "no tokenizer files" in err.problem


def test_mask_id_disagreement_between_config_and_tokenizer_is_named(ckpt, digest):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"mask_token_id": 5}))
    err = _load_error(ckpt, digest)
    assert err.path.endswith("config.json") and "mask_token_id=5" in err.problem


def test_missing_folder_and_file_paths_are_named(tmp_path, ckpt, digest):
    err = _load_error(tmp_path / "nope", digest)
    assert "no such folder" in err.problem
    err = _load_error(ckpt / "config.json", digest)
    assert "is a file" in err.problem


def test_unreachable_hub_id_says_to_pass_a_local_folder():
    with pytest.raises(CheckpointError) as info:
        load_llada_policy("dmpo-test-org/no-such-model-anywhere")
    assert "pass a local checkpoint folder" in str(info.value) and "\n" not in str(info.value)


def test_four_bit_on_cpu_is_a_clear_error(tiny_llada):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: 4-bit would be attempted")
    with pytest.raises(InvalidArgumentError, match="CUDA GPU"):
        load_llada_policy(str(tiny_llada), load_in_4bit=True, lora="papers")


def test_bad_options_are_reported_all_at_once(tiny_llada):
    with pytest.raises(ConfigError) as info:
        load_llada_policy(
            str(tiny_llada),
            dtype="float64",
            attn_implementation="flash_attention_2",
            device="cpu",
            device_map="auto",
            load_in_4bit=True,
        )
    problems = info.value.problems
    assert len(problems) == 4, problems
    assert any("is_causal" in p for p in problems)  # says WHY flash attention is refused


def test_bad_lora_settings_are_reported_all_at_once(tiny_llada):
    with pytest.raises(ConfigError) as info:
        load_llada_policy(str(tiny_llada), lora="some", lora_r=0, lora_dropout=1.5)
    assert len(info.value.problems) == 3
    with pytest.raises(ConfigError, match="lora is off"):
        load_llada_policy(str(tiny_llada), lora_r=8)


def test_tiny_tokenizer_is_usable_without_files():
    assert make_tiny_tokenizer().mask_token == "<|mdm_mask|>"


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # blocked by jinja's sandbox
    "{% for m in messages %}{{ m.content }",  # a syntax error
])
def test_a_chat_template_that_fails_is_one_line_before_any_weight_loads(ckpt, monkeypatch, template):
    import transformers

    for name in ("chat_template.jinja",):
        (ckpt / name).unlink(missing_ok=True)
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (ckpt / "tokenizer_config.json").write_text(json.dumps(config))

    def never(*args, **kwargs):
        raise AssertionError("the weights were loaded before the template was checked")

    monkeypatch.setattr(transformers.LlamaForCausalLM, "from_pretrained", never)
    with pytest.raises(InvalidArgumentError, match="chat template fails to render") as info:
        load_llada_policy(str(ckpt))
    assert "\n" not in str(info.value) and "prompt_style=compact" in str(info.value)
