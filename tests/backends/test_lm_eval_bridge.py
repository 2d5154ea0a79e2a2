"""The lm-evaluation-harness bridge on a tiny LLaDA checkpoint: generate_until through a
registered sampler, loglikelihood through the ELBO estimate, and a small local YAML task."""

from __future__ import annotations

import json

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed (pip install '.[lm-eval]')")

from dmpo.backends.lm_eval_bridge import DmpoLM  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from dmpo_core.objective.estimators import elbo_from_logp, masked_token_logp  # noqa: E402
from dmpo_core.objective.masks import sample_masks  # noqa: E402


@pytest.fixture
def lm(tiny_llada):
    return DmpoLM(model=str(tiny_llada), gen_length=8, block_length=8, steps=8, mc_samples=4, seed=3)


def _req(kind, args, i=0):
    return Instance(request_type=kind, doc={}, arguments=args, idx=i)


def test_generate_until_runs_the_sampler_and_cuts_at_the_stop_string(lm):
    from dmpo_core.training.rollout import decode_completions, encode_prompts

    (full,) = lm.generate_until([_req("generate_until", ("12+3=", {"until": []}))])
    # the same text as the sampler gives through dmpo's own path (greedy, seeded)
    tok, policy = lm.policy.tokenizer, lm.policy
    ids, mask = encode_prompts(tok, ["12+3="], policy.pad_id)  # [1, P]
    done = lm.sampler(policy.logits, ids, mask, mask_id=policy.mask_id, generator=torch.Generator().manual_seed(3))
    assert full == decode_completions(tok, done.completion_ids, policy.eos_id)[0] and len(full) <= 8
    if len(full) >= 3:
        stop = full[1:3]
        (cut,) = lm.generate_until([_req("generate_until", ("12+3=", {"until": [stop]}))])
        assert cut == full.split(stop)[0] and stop not in cut


def test_loglikelihood_is_the_elbo_estimate_with_the_same_masks(lm):
    (ll, greedy), = lm.loglikelihood([_req("loglikelihood", ("12+3=", "15"))])
    tok, policy = lm.policy.tokenizer, lm.policy
    ctx = torch.tensor([tok("12+3=", add_special_tokens=False)["input_ids"]])
    cont = torch.tensor([tok("15", add_special_tokens=False)["input_ids"]])
    elig = torch.ones_like(cont, dtype=torch.bool)
    masks = sample_masks(elig, 4, antithetic=True, clamp=True, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logp = masked_token_logp(policy.logits, ctx, torch.ones_like(ctx, dtype=torch.bool), cont, masks,
                                 policy.mask_id)
    assert ll == pytest.approx(float(elbo_from_logp(logp, masks, elig)[0]), abs=1e-6)
    assert ll < 0 and isinstance(greedy, bool)


def test_a_local_yaml_task_runs_through_simple_evaluate(lm, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"q": f"{a}+{b}=", "a": str(a + b), "choices": [str(a + b), str(a + b + 1)]})
                            + "\n" for a, b in [(1, 2), (3, 4), (2, 2)]))
    (tmp_path / "sums.yaml").write_text(f"""task: dmpo_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{q}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
""")
    (tmp_path / "sums_gen.yaml").write_text(f"""task: dmpo_sums_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{q}}}}"
doc_to_target: "{{{{a}}}}"
generation_kwargs:
  until: []
metric_list:
  - metric: exact_match
""")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(model=lm, tasks=["dmpo_sums", "dmpo_sums_gen"],
                              task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False), limit=3)
    assert 0.0 <= results["results"]["dmpo_sums"]["acc,none"] <= 1.0
    assert 0.0 <= results["results"]["dmpo_sums_gen"]["exact_match,none"] <= 1.0


#: Runs `dmpo lm-eval ARGS` in a fresh interpreter (where nothing has imported the bridge yet), with
#: lm-eval's own entry point replaced by one that prints the arguments and the model `dmpo` it finds.
_LM_EVAL_PROBE = """
import json, sys
import lm_eval.__main__ as harness
from lm_eval.api.registry import get_model
harness.cli_evaluate = lambda: print(json.dumps([sys.argv, get_model("dmpo").__name__]))
from dmpo.cli.main import main
main(sys.argv[1:])
"""


def test_dmpo_lm_eval_hands_its_arguments_to_lm_eval_with_the_model_registered():
    import subprocess
    import sys

    args = ["run", "--model", "dmpo", "--model_args", "model=x,steps=4", "--tasks", "t", "--limit", "2"]
    out = subprocess.run([sys.executable, "-c", _LM_EVAL_PROBE, "lm-eval", *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["lm-eval", *args], "DmpoLM"]
