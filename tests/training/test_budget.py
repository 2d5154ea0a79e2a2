"""The ``max_minutes`` time budget: the stopping rule, and a run that stops early, evaluates,
checkpoints and resumes to the same weights as a run without a budget."""

from __future__ import annotations

import json

import attrs
import torch

from dmpo_core.training import TrainConfig, train
from dmpo_core.training import checkpoint as ckpt
from dmpo_core.training.budget import TimeBudget
from tests.training.test_loop import SMALL, make_components, weights_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_stops_when_the_next_step_and_a_final_evaluation_would_overrun():
    clock = FakeClock()
    budget = TimeBudget(1.0, clock=clock)  # 60 s
    assert not budget.exhausted()  # no step seen yet: nothing to predict from
    budget.note_step(8.0)
    budget.note_step(12.0)  # mean step 10 s
    clock.now += 45.0
    assert not budget.exhausted()  # 45 + 10 = 55 <= 60
    budget.note_eval(6.0)
    assert budget.exhausted()  # 45 + 10 + 6 = 61 > 60
    budget.note_eval(1.0)  # the slowest evaluation is what counts
    assert budget.eval_seconds == 6.0


def test_no_budget_is_never_exhausted():
    clock = FakeClock()
    budget = TimeBudget(None, clock=clock)
    budget.note_step(1e9)
    clock.now += 1e9
    assert not budget.exhausted()


def test_a_spent_budget_stops_evaluates_and_checkpoints_and_resume_matches_an_unbudgeted_run(tmp_path):
    cfg = TrainConfig.from_dict(SMALL)  # 4 steps, no budget
    full = make_components(cfg)
    train(cfg, full, tmp_path / "full")

    tight = attrs.evolve(cfg, max_minutes=1e-9)  # spent after the first step
    comp = make_components(tight)
    last = train(tight, comp, tmp_path / "tight")
    assert last["stopped"] == "max_minutes" and last["step"] == 1
    records = [json.loads(ln) for ln in (tmp_path / "tight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("eval")] == [0, 1]  # a final evaluation at the stop
    assert records[-1] == {"step": 1, "stopped": "max_minutes", "total_steps": 4, "max_minutes": 1e-9}
    assert ckpt.latest_checkpoint(tmp_path / "tight").name == "step-000001"

    resumed = make_components(cfg)  # a new invocation without a budget finishes the run
    last = train(cfg, resumed, tmp_path / "tight", resume=True)
    assert last["step"] == 4 and "stopped" not in last
    for a, b in zip(weights_of(full), weights_of(resumed)):
        assert torch.equal(a, b)
