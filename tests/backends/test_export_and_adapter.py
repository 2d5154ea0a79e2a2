"""Checkpoints that leave dmpo: `dmpo export --format hf` loads in stock transformers with our
logits, and a LoRA policy's adapter reloads in stock peft (and in dmpo) with its logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.hf_policy import shift_logits
from dmpo.backends.llada import load_llada_policy
from dmpo.backends.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, is_adapter_folder

from dmpo.cli import main as cli_main
from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.training.build import load_policy
from dmpo_core.training.recipe import Recipe, read_recipe, write_recipe

cli_main._add_builtin_commands()
CLI = cli_main.cli


def _batch(n: int = 2, s: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 100, (n, s), generator=torch.Generator().manual_seed(seed))  # [N, S]
    return ids, torch.ones_like(ids)


@torch.no_grad()
def _ours(policy, ids, mask) -> torch.Tensor:
    return policy.logits(ids, mask)  # [N, S, V]


@torch.no_grad()
def _stock(model, ids, mask) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask).logits  # [N, S, V]


def _perturb_adapter(policy, seed: int = 1) -> None:
    """Give the adapter non-zero B matrices (fresh LoRA is the identity, which would hide a lost adapter)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_the_hf_export_loads_in_stock_transformers_with_our_logits(family, tiny_llada, tiny_dream, tmp_path):
    from transformers import AutoModelForCausalLM

    source = tmp_path / "source"  # a copy: the session's fixture folder stays as it was
    shutil.copytree(tiny_llada if family == "llada" else tiny_dream, source)
    write_recipe(source, Recipe(backend=family, base_model=str(source), task="sudoku", gen_length=16,
                                block_length=16))
    # no --backend: the recipe names it (a Dream checkpoint is not read by the llada default)
    result = CliRunner().invoke(CLI, ["export", str(source), "--format", "hf", "--output", str(tmp_path / "hf")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert read_recipe(tmp_path / "hf").backend == family  # the recipe travels with the export
    ids, mask = _batch()
    ours = _ours(load_policy(family, str(source), {"reference": False}), ids, mask)
    stock = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert not stock.config.is_causal
    raw = _stock(stock, ids, mask)
    expected = shift_logits(raw, mask) if family == "dream" else raw  # Dream predicts token i from position i-1
    torch.testing.assert_close(expected, ours, atol=1e-5, rtol=1e-5)
    # and dmpo reads the export back as the same policy
    again = _ours(load_policy(family, str(tmp_path / "hf"), {"reference": False}), ids, mask)
    torch.testing.assert_close(again, ours, atol=1e-5, rtol=1e-5)


def test_the_original_export_round_trips(tiny_llada_converted, tmp_path):
    result = CliRunner().invoke(CLI, ["export", str(tiny_llada_converted), "--format", "original", "--output",
                                      str(tmp_path / "orig")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "orig" / "config.json").read_text())["model_type"] == "llada"
    ids, mask = _batch()
    torch.testing.assert_close(_ours(load_llada_policy(str(tmp_path / "orig"), reference=False), ids, mask),
                               _ours(load_llada_policy(str(tiny_llada_converted), reference=False), ids, mask))


@pytest.fixture
def adapted(tiny_llada, tmp_path):
    """A LoRA policy (every projection) with non-zero adapter weights, and its saved adapter folder."""
    policy = load_llada_policy(str(tiny_llada), lora={"preset": "all", "r": 4, "alpha": 8.0, "dropout": 0.0})
    _perturb_adapter(policy)
    policy.save(str(tmp_path / "adapter"), format="adapter")
    return policy, tmp_path / "adapter"


def test_the_adapter_reloads_in_stock_peft_with_our_logits(adapted, tiny_llada, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    policy, adapter = adapted
    assert (adapter / ADAPTER_WEIGHTS).is_file() and is_adapter_folder(adapter)
    assert json.loads((adapter / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == str(tiny_llada)
    base_hf = tmp_path / "base-hf"  # a stock load needs the base in the hf layout
    load_llada_policy(str(tiny_llada), reference=False).save(str(base_hf), format="converted")
    stock = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(str(base_hf)), str(adapter)).eval()
    ids, mask = _batch()
    ours = _ours(policy, ids, mask)
    torch.testing.assert_close(_stock(stock, ids, mask), ours, atol=1e-5, rtol=1e-5)
    with stock.disable_adapter():  # the adapter really changes the logits, so equality above means something
        assert (_stock(stock, ids, mask) - ours).abs().max() > 1e-3


def test_dmpo_loads_an_adapter_onto_the_base_in_either_form(adapted, tiny_llada):
    policy, adapter = adapted
    ids, mask = _batch()
    ours = _ours(policy, ids, mask)
    by_option = load_policy("llada", str(tiny_llada), {"adapter": str(adapter)})
    torch.testing.assert_close(_ours(by_option, ids, mask), ours, atol=1e-6, rtol=1e-6)
    assert by_option.lora is not None and by_option.lora.r == 4
    # its reference is the loaded policy (the starting point of further training), not the bare base
    with torch.no_grad():
        torch.testing.assert_close(by_option.reference_logits(ids, mask), ours, atol=1e-6, rtol=1e-6)
    assert sum(p.numel() for p in by_option.trainable_parameters()) == sum(
        p.numel() for p in policy.trainable_parameters())


def test_eval_accepts_an_adapter_folder_as_model_or_beside_a_base(adapted, tiny_llada):
    _, adapter = adapted
    from dmpo.cli.model_choice import backend_options, choose_model

    alone = choose_model(str(adapter))
    assert (alone.model, alone.adapter) == (str(tiny_llada), str(adapter))
    beside = choose_model(str(tiny_llada), str(adapter))
    assert (beside.model, beside.adapter) == (str(tiny_llada), str(adapter))
    assert backend_options(alone, {"dtype": "float32"}) == {"dtype": "float32", "adapter": str(adapter)}
    with pytest.raises(InvalidArgumentError, match="not a peft adapter folder"):
        choose_model(str(tiny_llada), str(tiny_llada))
    for args in (["--model", str(adapter)], ["--model", str(tiny_llada), "--adapter", str(adapter)]):
        result = CliRunner().invoke(CLI, ["generate", *args, "--gen-length", "8", "--block-length", "8", "--no-chat",
                                          "12"], catch_exceptions=False)
        assert result.exit_code == 0, result.output


def test_adapter_and_lora_together_are_refused_before_loading(tiny_llada, adapted):
    _, adapter = adapted
    with pytest.raises(ConfigError, match="adapter and lora are both set"):
        load_policy("llada", str(tiny_llada), {"adapter": str(adapter), "lora": "all"})


def test_a_policy_without_lora_has_no_adapter_to_save(tiny_llada, tmp_path):
    with pytest.raises(InvalidArgumentError, match="no LoRA adapter"):
        load_llada_policy(str(tiny_llada), reference=False).save(str(tmp_path / "a"), format="adapter")


def test_a_dream_adapter_reloads_in_stock_peft(tiny_dream, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2ForCausalLM

    policy = load_dream_policy(str(tiny_dream), lora={"preset": "all", "r": 4, "dropout": 0.0})
    _perturb_adapter(policy, seed=2)
    policy.save(str(tmp_path / "adapter"), format="adapter")
    load_dream_policy(str(tiny_dream), reference=False).save(str(tmp_path / "base-hf"), format="converted")
    stock = PeftModel.from_pretrained(Qwen2ForCausalLM.from_pretrained(str(tmp_path / "base-hf")),
                                      str(tmp_path / "adapter")).eval()
    ids, mask = _batch()
    torch.testing.assert_close(shift_logits(_stock(stock, ids, mask), mask), _ours(policy, ids, mask),
                               atol=1e-5, rtol=1e-5)
