"""The ``deepspeed`` engine on 2 CPU ranks, driven by hand (tests/distributed/engine_check.py; the
training loop on it is in test_deepspeed_loop.py): each launch trains for three steps on its
share of a global batch and compares with a local engine on the whole batch in the same process."""

from __future__ import annotations

import math

import pytest
import torch

from tests.distributed.conftest import HERE, check_ok, launch, rank_reports

SCRIPT = str(HERE / "engine_check.py")


def run_check(tmp_path, *flags: str) -> list[dict]:
    out = tmp_path / "report.json"
    check_ok(launch([SCRIPT, str(out), *flags]))
    return rank_reports(out, 2)


def assert_trains_like_one_process(report: dict) -> None:
    c = report["checks"]
    assert c["shard_contiguous"] == [0, 4, 4, 8]  # rank 0 owns rows 0-3, rank 1 rows 4-7
    ours, local = c["norms"]
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(ours, local)), c["norms"]
    assert all(a == b for a, b in c["lrs"]), c["lrs"]  # warm-up 2 steps then linear decay, as the local engine
    assert c["lrs"][0][0] == pytest.approx(5e-4)
    assert c["max_weight_diff"] < 1e-5
    assert c["whole_inside"]
    assert c["logits_diff"] < 1e-4
    assert c["forwards"] == [1, 3]  # different numbers of forwards per rank inside full_parameters: no hang
    assert c["unsynced_reference_gap"] > 1e-3 and c["reference_logits_diff"] < 1e-5
    assert c["synced_reference_diff"] < 1e-6
    assert c["nonfinite_norm"] in (math.inf, "Infinity") or not math.isfinite(c["nonfinite_norm"])
    assert c["nonfinite_unchanged"]


def test_zero3_two_ranks_train_like_one_process_and_save_a_loadable_policy(tmp_path):
    save = tmp_path / "save"
    reports = run_check(tmp_path, "--stage", "3", "--save", str(save))
    for report in reports:
        assert_trains_like_one_process(report)
        c = report["checks"]
        assert c["partitioned_numel_outside"] == 0  # a weight is an empty shard outside full_parameters
        assert c["stats"]["gathers"] >= 3 and c["stats"]["gather_seconds"] > 0
        assert c["resumed_step_diff"] == 0.0 and c["resumed_lr"][0] == c["resumed_lr"][1]
    assert reports[0]["checks"]["max_weight_diff"] == reports[1]["checks"]["max_weight_diff"]
    assert sorted(p.name for p in (save / "engine" / "state").glob("*optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]

    # the consolidated policy reloads in one process (local engine's loader) with identical logits
    from dmpo.backends.engines import LocalEngine
    from dmpo_core.training.build import load_policy

    from tests.distributed.engine_check import batch

    policy = load_policy("llada", str(save / "policy"), {})
    LocalEngine(policy, lr=1e-3)
    data = batch(policy.vocab_size)
    with torch.no_grad():
        logits = policy.current_logits(data[0][:2], data[1][:2])
    assert torch.equal(logits, torch.load(save / "logits.pt"))


def test_zero2_two_ranks_train_like_one_process_and_zero_grad_drops_reduced_gradients(tmp_path):
    for report in run_check(tmp_path, "--stage", "2"):
        assert_trains_like_one_process(report)  # its norms would show a dropped backward's gradients
        assert report["checks"]["stats"]["gathers"] == 0  # ZeRO-2: weights are whole, nothing to gather


def test_lora_under_zero3_with_checkpointing_trains_like_one_process_and_saves_a_peft_adapter(tmp_path):
    save = tmp_path / "save"
    for report in run_check(tmp_path, "--stage", "3", "--lora", "--checkpointing", "--save", str(save)):
        assert_trains_like_one_process(report)
        assert report["checks"]["resumed_step_diff"] == 0.0

    from dmpo_core.training.build import load_policy

    from tests.distributed.engine_check import batch

    policy = load_policy("llada", "builtin:sudoku-tiny", {"adapter": str(save / "adapter")})  # through peft
    data = batch(policy.vocab_size)
    with torch.no_grad():
        logits = policy.current_logits(data[0][:2], data[1][:2])
    assert (logits - torch.load(save / "logits.pt")).abs().max() < 1e-5


def test_dream_full_fine_tuning_with_checkpointing_under_zero3_saves_a_stock_transformers_model(
        tmp_path, tiny_dream_folder):
    save = tmp_path / "save"
    for report in run_check(tmp_path, "--stage", "3", "--checkpointing", "--backend", "dream",
                            "--model", str(tiny_dream_folder), "--save", str(save), "--converted"):
        assert_trains_like_one_process(report)

    # the converted layout of the consolidated policy loads in stock transformers with the trained tensors
    from transformers import AutoModelForCausalLM

    from dmpo_core.training.build import load_policy

    policy = load_policy("dream", str(save / "policy"), {})
    stock = AutoModelForCausalLM.from_pretrained(str(save / "policy-hf"))
    ours, theirs = policy.model.state_dict(), stock.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not torch.equal(ours["model.embed_tokens.weight"],
                           load_policy("dream", str(tiny_dream_folder), {}).model.state_dict()["model.embed_tokens.weight"])


@pytest.fixture(scope="module")
def tiny_dream_folder(tmp_path_factory):
    from dmpo.backends.tiny import write_tiny_dream

    return write_tiny_dream(tmp_path_factory.mktemp("ckpt") / "dream", seed=0)
