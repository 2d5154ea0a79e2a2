"""The training loop on a fake backend and task: it runs, logs, checkpoints, resumes exactly
and survives bad rewards and non-finite losses."""

from __future__ import annotations

import json

import pytest
import torch

from dmpo_core.errors import ConfigError, TrainingError
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective
from dmpo_core.samplers import LowConfidenceSampler
from dmpo_core.training import Components, TrainConfig, train
from dmpo_core.training import checkpoint as ckpt
from dmpo.backends.engines import LocalEngine
from tests.training.fakes import DigitTask, FakePolicy

SMALL = {
    "total_steps": 4, "eval_size": 4, "eval_batch_size": 4, "save_every": 2, "keep_checkpoints": 3,
    "rollout": {"prompts_per_step": 2, "group_size": 4, "gen_length": 4, "block_length": 4, "steps": 2,
                "temperature": 1.0},
    "scoring": {"replicates": 2},
    "weighting": {"scheme": "dmpo", "options": {"alpha": 0.5}},
    "loss": {"num_iterations": 2, "options": {"replicates": 2}},
    "optim": {"lr": 1e-2, "grad_clip": 1.0, "weight_decay": 0.0},
}


def make_components(cfg: TrainConfig, task: DigitTask | None = None, objective=None) -> Components:
    policy = FakePolicy(seed=0)
    rc = cfg.rollout
    opts = dict(gen_length=rc.gen_length, block_length=rc.block_length, steps=rc.steps)
    return Components(
        policy=policy,
        task=task or DigitTask(),
        sampler=LowConfidenceSampler(temperature=rc.temperature, **opts),
        eval_sampler=LowConfidenceSampler(temperature=0.0, **opts),
        weighting=DmpoWeighting(**cfg.weighting.options),
        objective=objective or WdceObjective(**cfg.loss.options),
        engine=LocalEngine(policy, lr=cfg.optim.lr, grad_clip=cfg.optim.grad_clip, weight_decay=0.0),
    )


def weights_of(comp: Components) -> list[torch.Tensor]:
    return [p.detach().clone() for p in comp.policy.trainable_parameters()]


def test_training_runs_logs_and_checkpoints(tmp_path):
    cfg = TrainConfig.from_dict(SMALL)
    comp = make_components(cfg)
    before = weights_of(comp)
    last = train(cfg, comp, tmp_path)
    assert last["step"] == 4
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert [r["step"] for r in evals] == [0, 4]  # base and final evaluation
    for key in ("reward_mean", "ess_mean", "loss", "grad_norm", "time/rollout", "time/logp", "time/other"):
        assert key in steps[0]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000004"
    assert (tmp_path / "checkpoints" / "step-000002" / "policy" / "model.pt").exists()
    assert any(not torch.equal(a, b) for a, b in zip(before, weights_of(comp)))  # it learned something


def test_killed_and_resumed_run_reaches_the_same_weights(tmp_path):
    cfg = TrainConfig.from_dict(SMALL)
    full = make_components(cfg)
    train(cfg, full, tmp_path / "full")

    def kill_at_3(record):
        if record["step"] == 3:
            raise KeyboardInterrupt  # after step 3's update, before its checkpoint: resume from step 2

    killed = make_components(cfg)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, killed, tmp_path / "killed", on_step=kill_at_3)
    assert ckpt.latest_checkpoint(tmp_path / "killed").name == "step-000002"
    resumed = make_components(cfg)  # a fresh process: base weights, fresh optimizer
    train(cfg, resumed, tmp_path / "killed", resume=True)
    for a, b in zip(weights_of(full), weights_of(resumed)):
        assert torch.equal(a, b)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if '"eval": true' not in ln]
    assert steps == [1, 2, 3, 4]  # the killed step-3 record was replaced, not duplicated


def test_reward_that_raises_on_some_completions_is_counted_and_training_goes_on(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 2, "eval_size": 0})
    comp = make_components(cfg, task=DigitTask(bad_reward_every=3))
    last = train(cfg, comp, tmp_path)
    assert last["step"] == 2
    assert last["reward_failures"] > 0
    assert last["n_invalid"] == last["reward_failures"]


class NanObjective:
    needs = frozenset()

    def prepare(self, policy, batch, *, num_iterations, generator):
        return {}

    def __call__(self, policy, batch, weights, *, num_groups, iteration=0, weighting=None, generator=None):
        logits = policy.logits(batch.input_ids, batch.attention_mask, last=1)
        return logits.sum() * float("nan"), {}


def test_non_finite_losses_stop_the_run_with_the_last_checkpoint_intact(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 3, "eval_size": 0, "max_bad_steps": 2})
    good = make_components(cfg)
    train(cfg, good, tmp_path)  # a good run leaves step-3
    bad = make_components(cfg, objective=NanObjective())
    cfg6 = TrainConfig.from_dict({**SMALL, "total_steps": 6, "eval_size": 0, "max_bad_steps": 2})
    with pytest.raises(TrainingError, match=r"2 bad steps in a row \(non-finite loss or gradient norm\) at step 5"):
        train(cfg6, bad, tmp_path, resume=True)
    # step 4 was skipped (no update) and checkpointed; step 5 stopped the run before any save
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step-000004"
    state = ckpt.load_trainer_state(latest)
    assert state["counters"]["skipped_steps"] == 1
    for saved, trained in zip(state["trainable"], weights_of(good)):
        assert torch.equal(saved, trained)  # skipped steps left the weights untouched


def test_invalid_config_reports_every_problem_at_once():
    bad = {
        "rollout": {"group_size": 1, "gen_length": 10, "block_length": 4},
        "scoring": {"replicates": 3},
        "optim": {"lr": -1.0},
        "nonsense": 1,
    }
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(bad)
    text = str(err.value)
    for needle in ("rollout.group_size=1", "optim.lr=-1.0", "nonsense: unknown key"):
        assert needle in text, text
    # cross-field checks run once the fields themselves are valid
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"rollout": {"gen_length": 10, "block_length": 4}, "scoring": {"replicates": 3}})
    assert "multiple of rollout.block_length" in str(err.value)
    assert "rollout.gen_length=10" in str(err.value) and "rollout.rollout" not in str(err.value)
    with pytest.raises(ConfigError, match="scoring.replicates=3"):
        TrainConfig.from_dict({"scoring": {"replicates": 3}})


def test_numbers_written_without_a_dot_are_read_as_numbers():
    # YAML 1.1 parses "3e-5" as a string; configs accept it as the number users meant
    assert TrainConfig.from_dict({"optim": {"lr": "3e-5"}}).optim.lr == 3e-5
    with pytest.raises(ConfigError, match="optim.lr='fast': must be a number"):
        TrainConfig.from_dict({"optim": {"lr": "fast"}})


def test_exact_log_likelihoods_from_a_random_order_sampler(tmp_path):
    from dmpo_core.samplers import RoarSampler
    from dmpo_core.training.loop import batch_items
    from dmpo_core.training.rollout import exact_log_likelihoods, sample_group_batch

    policy, task = FakePolicy(seed=0), DigitTask()
    sampler = RoarSampler(gen_length=4, block_length=4, temperature=1.0)
    samples = sample_group_batch(policy, sampler, task, batch_items(task.train_items(), 0, 2, 0), group_size=3,
                                 gen_length=4, batch_rows=0, generator=torch.Generator().manual_seed(0))
    eligible = torch.ones(6, 4, dtype=torch.bool)
    log_old, log_ref = exact_log_likelihoods(policy, samples, eligible)
    assert torch.allclose(log_old, samples.token_logp.sum(1))
    assert torch.allclose(log_old, log_ref, atol=1e-5)  # the reference IS the rollout policy at step 0
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.1)
    changed = exact_log_likelihoods(policy, samples, eligible)[1]
    assert torch.allclose(changed, log_ref)  # the reference replay ignores the trained weights


def test_exact_scoring_runs_in_the_loop_and_needs_a_recording_sampler(tmp_path):
    from dmpo_core.samplers import RoarSampler

    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 1, "eval_size": 0, "scoring": {"method": "exact"}})
    comp = make_components(cfg)
    with pytest.raises(TrainingError, match="scoring.method=exact needs a sampler"):
        train(cfg, comp, tmp_path / "a")
    comp = make_components(cfg)
    comp.sampler = RoarSampler(gen_length=4, block_length=4, temperature=1.0)
    last = train(cfg, comp, tmp_path / "b")
    assert last["log_rnd_mean"] == pytest.approx(0.0, abs=1e-5)  # exact: no estimator noise at step 1


class CountingPolicy(FakePolicy):
    """FakePolicy that counts reference forwards (the log-likelihood estimate's cost)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.ref_calls = 0

    def reference_logits(self, input_ids, attention_mask, *, last=None):
        self.ref_calls += 1
        return super().reference_logits(input_ids, attention_mask, last=last)


@pytest.mark.parametrize(("sync_every", "scheme", "expected_calls"), [
    (1, "dmpo", 1),  # synced after every update: only step 1 (reference = base, never synced) estimates
    (2, "dmpo", 3),  # steps 1, 2 and 4 estimate; step 3 follows a sync and skips
    (0, "dmpo", 4),
    (1, "dmpo-unbiased", 4),  # the unbiased baseline needs log p_old itself: never skipped
])
def test_log_likelihoods_are_skipped_right_after_a_reference_sync(tmp_path, sync_every, scheme, expected_calls):
    cfg = TrainConfig.from_dict({**SMALL, "eval_size": 0, "ref_sync_every": sync_every,
                                 "weighting": {"scheme": scheme, "options": {"alpha": 0.5}}})
    comp = make_components(cfg)
    comp.policy = CountingPolicy(seed=0)
    comp.engine = LocalEngine(comp.policy, lr=cfg.optim.lr, grad_clip=cfg.optim.grad_clip, weight_decay=0.0)
    if scheme == "dmpo-unbiased":
        from dmpo_core.registry import get_registry

        comp.weighting = get_registry().create("weighting", scheme, **cfg.weighting.options)
    train(cfg, comp, tmp_path)
    assert comp.policy.ref_calls == expected_calls
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    if sync_every == 1 and scheme == "dmpo":
        assert all(r["log_rnd_mean"] == 0.0 for r in records[1:])  # reference == rollout policy: exactly 0


class NanGradEngine(LocalEngine):
    """A finite loss whose gradient norm is not finite (as at optim.lr=100)."""

    def step(self) -> float:
        self.zero_grad()
        return float("nan")


def test_a_non_finite_gradient_norm_is_a_bad_step_and_stops_the_run(tmp_path):
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 6, "eval_size": 0, "max_bad_steps": 2, "save_every": 1})
    comp = make_components(cfg)
    comp.engine = NanGradEngine(comp.policy, lr=1e-2, grad_clip=1.0, weight_decay=0.0)
    records = []
    with pytest.raises(TrainingError, match=r"2 bad steps in a row .* at step 2"):
        train(cfg, comp, tmp_path, on_step=records.append)
    assert records[0]["finite"] is False and records[0]["skipped_steps"] == 1


@pytest.mark.parametrize("value", ["inf", "nan", "1e10", "100"])
def test_an_absurd_learning_rate_is_refused(value):
    with pytest.raises(ConfigError, match="optim.lr"):
        TrainConfig.from_dict({"optim": {"lr": float(value)}})
