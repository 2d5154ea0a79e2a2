"""Both built-in backends pass the public backend contract, with and without LoRA."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.llada import load_llada_policy

from dmpo_core.testing.backend_contract import (
    CHECK_NAMES,
    BackendContractError,
    BackendContractTests,
    check_left_padding,
    run_backend_contract,
)

# small adapters: r 4 keeps the tests fast; alpha 8 gives the default-like scale 2
llada_lora_papers = functools.partial(load_llada_policy, lora="papers", lora_r=4, lora_alpha=8)
llada_lora_all = functools.partial(load_llada_policy, lora="all", lora_r=4, lora_alpha=8)
dream_lora = functools.partial(load_dream_policy, lora="all", lora_r=4, lora_alpha=8)


class TestLladaContract(BackendContractTests):
    @pytest.fixture
    def contract_backend(self, tiny_llada):
        return load_llada_policy, tiny_llada


class TestLladaLoraPapersContract(BackendContractTests):
    @pytest.fixture
    def contract_backend(self, tiny_llada):
        return llada_lora_papers, tiny_llada


class TestLladaLoraAllContract(BackendContractTests):
    @pytest.fixture
    def contract_backend(self, tiny_llada):
        return llada_lora_all, tiny_llada


class TestDreamContract(BackendContractTests):
    @pytest.fixture
    def contract_backend(self, tiny_dream):
        return load_dream_policy, tiny_dream


class TestDreamLoraContract(BackendContractTests):
    @pytest.fixture
    def contract_backend(self, tiny_dream):
        return dream_lora, tiny_dream


def test_run_backend_contract_reports_the_checks_it_ran(tiny_llada, tmp_path):
    ran = run_backend_contract(load_llada_policy, tiny_llada, tmp_dir=tmp_path, only=("special_ids", "bidirectional"))
    assert ran == ["special_ids", "bidirectional"]
    assert set(CHECK_NAMES) >= set(ran)


class _IgnoresPadding:
    """A policy that attends to left padding, as the original LLaDA remote code does."""

    def __init__(self, policy):
        self._policy = policy
        self.pad_id = policy.pad_id

    def logits(self, input_ids, attention_mask, *, last=None):
        return self._policy.logits(input_ids, torch.ones_like(attention_mask), last=last)

    def train(self, mode=True):
        return self._policy.train(mode)


def test_contract_catches_a_policy_that_attends_to_padding(tiny_llada):
    with pytest.raises(BackendContractError, match="left_padding"):
        check_left_padding(_IgnoresPadding(load_llada_policy(str(tiny_llada))))


def test_contract_module_imports_only_torch_attrs_and_the_standard_library():
    import ast
    import sys

    import dmpo_core.testing.backend_contract as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    top = set()
    for node in tree.body:  # module level only; imports inside functions are lazy
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top - set(sys.stdlib_module_names) <= {"torch", "attrs", "__future__"}


def test_registering_the_backends_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, dmpo.backends.llada, dmpo.backends.dream; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
