"""Completions end at the first of the policy's stop ids (eos and every end-of-turn token), in
training rollouts and in evaluations alike: text after the end of the turn is never scored.
Evaluation records in metrics.jsonl carry their protocol."""

from __future__ import annotations

import json

import attrs
import torch

from dmpo_core.data import SampleOutput
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective
from dmpo_core.training import Components, TrainConfig, train
from dmpo_core.training.evaluate import evaluate
from dmpo_core.training.rollout import decode_completions
from dmpo.backends.engines import LocalEngine
from tests.training.fakes import CHARS, EOS, PAD, CharTokenizer, DigitTask, FakePolicy

EOT = PAD  # a second special id that ends a turn (the fake tokenizer skips it when decoding)


class TurnEndingPolicy(FakePolicy):
    eot_id = EOT
    stop_ids = (EOS, EOT)


@attrs.frozen
class ScriptedSampler:
    """Returns the same completion for every prompt: digits, end of turn, then more digits."""

    row: tuple[int, ...]
    returns_logp = False

    def __call__(self, logits_fn, prompt_ids, prompt_mask, *, mask_id, generator=None, prefill=None) -> SampleOutput:
        n = prompt_ids.shape[0]
        return SampleOutput(completion_ids=torch.tensor([self.row] * n, dtype=torch.long), nfe=1)  # [N, L]


def ids(text: str) -> list[int]:
    return [CHARS.index(c) for c in text]


def test_decoding_cuts_at_the_first_stop_id():
    rows = torch.tensor([[*ids("12"), EOT, *ids("3")], [*ids("1"), EOS, *ids("23")], ids("4567")])  # [3, 4]
    assert decode_completions(CharTokenizer(), rows, (EOS, EOT)) == ["12", "1", "4567"]
    # eos alone (the old behaviour) would score the digit written after the end of the turn
    assert decode_completions(CharTokenizer(), rows, EOS) == ["123", "1", "4567"]


def test_evaluation_scores_only_the_text_before_the_end_of_turn():
    task = DigitTask(length=4, n_test=4)
    item = task.test_items()[0]
    digits = item["digits"]
    row = (*ids(digits[:2]), EOT, *ids(digits[2:]))  # the last two digits come after the turn ended
    metrics, records = evaluate(TurnEndingPolicy(), task, ScriptedSampler(row), [item], batch_size=1, gen_length=5)
    assert records[0]["completion"] == digits[:2]
    assert metrics["accuracy"] == 0.5  # 2 of 4 digits; 1.0 if the text after the turn were read


def test_training_rewards_and_evaluation_rows_end_at_the_turn(tmp_path):
    cfg = TrainConfig.from_dict({
        "total_steps": 1, "eval_size": 2, "eval_batch_size": 2, "save_every": 0, "task": "digits",
        "rollout": {"prompts_per_step": 2, "group_size": 2, "gen_length": 5, "block_length": 5, "steps": 1},
        "scoring": {"replicates": 2}, "loss": {"num_iterations": 1, "options": {"replicates": 2}},
        "optim": {"lr": 1e-3, "weight_decay": 0.0},
    })
    seen: list[str] = []
    task = DigitTask(length=4, n_train=4, n_test=2)
    original = task._reward
    task._reward = lambda prompts, completions, items: (seen.extend(completions), original(prompts, completions, items))[1]
    policy = TurnEndingPolicy()
    sampler = ScriptedSampler((*ids("12"), EOT, *ids("34")))
    comp = Components(policy=policy, task=task, sampler=sampler, eval_sampler=sampler,
                      weighting=DmpoWeighting(alpha=0.5), objective=WdceObjective(replicates=2),
                      engine=LocalEngine(policy, lr=1e-3, grad_clip=1.0, weight_decay=0.0))
    train(cfg, comp, tmp_path)
    assert seen and set(seen) == {"12"}  # the rollout's rewards read up to the end of the turn
    evals = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"eval": true' in ln]
    assert [r["step"] for r in evals] == [0, 1]
    protocol = evals[0]["protocol"]
    assert protocol["sampler"] == {"name": "low-confidence", "options": {"row": [*ids("12"), EOT, *ids("34")]}}
    assert protocol["gen_length"] == 5 and protocol["seed"] == cfg.seed + 7919 and protocol["batch_size"] == 2
    assert protocol["dataset"]["size"] == 2 and len(protocol["dataset"]["fingerprint"]) == 16
    assert protocol["task"] == "digits" and protocol["preset"] is None
