"""Groups stay whole per rank: 2 ranks give the weights and metrics of one process, for every
weighting scheme (the official DMPO code's per-GPU baselines would not)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from dmpo_core.data import RolloutBatch
from dmpo_core.registry import get_registry
from dmpo_core.training import ranks
from tests.distributed.ranks_launch import python, torchrun

HERE = Path(__file__).parent
STATS = ("reward_mean", "reward_std", "nfe", "ess_mean", "ess_min", "weight_max", "adv_pos_sum", "loss")


class _TwoRanks:
    """Rank ``rank`` of two, whose gathers return the whole batch's tensors (no processes)."""

    rng_mode = "keyed"
    world_size = 2

    def __init__(self, rank: int, whole: dict[int, torch.Tensor]) -> None:
        self.rank, self._whole = rank, whole

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        return self._whole[id(t)]


def _batch(rewards: torch.Tensor, g: int, log_old: torch.Tensor) -> RolloutBatch:
    n = rewards.shape[0]
    return RolloutBatch(prompt_ids=torch.zeros(n, 2, dtype=torch.long), prompt_mask=torch.ones(n, 2, dtype=torch.bool),
                        completion_ids=torch.zeros(n, 3, dtype=torch.long), eligible=torch.ones(n, 3, dtype=torch.bool),
                        rewards=rewards, group_size=g, nfe=1, log_p_old=log_old, log_p_ref=log_old + 0.3)


@pytest.mark.parametrize("name", get_registry().names("weighting"))
def test_each_rank_gets_its_rows_of_the_whole_batch_weights(name):
    scheme = get_registry().create("weighting", name)
    g, groups = 4, 4
    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(groups * g, generator=gen).round(decimals=1)  # [B*G]
    rewards[5] = math.nan
    log_old = -torch.rand(groups * g, generator=gen) * 5  # [B*G]
    whole = _batch(rewards, g, log_old)
    expect = scheme(rewards, whole.log_rnd, g, log_p_old=log_old, log_p_current=log_old)
    for rank, mine in enumerate((range(0, 2), range(2, 4))):
        rows = ranks.group_rows(mine, g)
        part = whole.rows(rows)
        full = {id(part.rewards): rewards, id(part.log_p_old): log_old}
        log_rnd = part.log_rnd
        full[id(log_rnd)] = whole.log_rnd
        local, all_w, _ = ranks.weigh_whole_batch(_TwoRanks(rank, full), scheme, part, log_rnd, part.log_p_old, mine)
        torch.testing.assert_close(local.advantages, expect.advantages[rows], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(all_w.advantages, expect.advantages, rtol=0, atol=0, equal_nan=True)


def test_weighing_each_rank_slice_alone_would_change_the_advantages():
    """The reason for gathering: a batch-wide scheme weighed per slice gives other numbers (here
    the baseline of grpo's scale over its slice vs the whole; a mean baseline per group is whole
    already, so the check uses groups split across slices, as per-GPU code does)."""
    scheme = get_registry().create("weighting", "dmpo-mean")
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 1.0, 1.0, 0.0, 0.5])  # one group of 8
    whole = scheme(rewards, torch.zeros(8), 8).advantages
    halves = torch.cat([scheme(rewards[:4], torch.zeros(4), 4).advantages,
                        scheme(rewards[4:], torch.zeros(4), 4).advantages])
    assert not torch.allclose(whole, halves)


def test_two_ranks_train_like_one_process_for_every_scheme(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    done = python(str(HERE / "schemes_run.py"), str(one), "local")
    assert done.returncode == 0, done.stderr[-3000:]
    done = torchrun(2, str(HERE / "schemes_run.py"), str(two), "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    names = [n for n in get_registry().names("weighting") if n != "example-tempered"]
    for name in names:
        a, b = torch.load(one / f"{name}.pt", weights_only=False), torch.load(two / f"{name}.pt", weights_only=False)
        for p, q in zip(a["weights"], b["weights"], strict=True):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=f"{name}: weights")
        assert a["metrics"]["reward_mean"] == b["metrics"]["reward_mean"], name
        assert b["metrics"]["world_size"] == 2
        for key in STATS:
            if key in a["metrics"]:
                assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-4, abs=1e-6), (name, key)


def test_cuda_without_an_index_is_this_ranks_gpu(monkeypatch):
    from dmpo.backends.hf_policy import rank_device

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert rank_device("cuda") == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == "cuda:3" and rank_device("cuda:1") == "cuda:1" and rank_device("cpu") == "cpu"
