"""The command line end to end on the built-in model: train (seconds), resume, eval, generate, plot,
and the one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo_core.training import build
from dmpo_core.training import TrainConfig, train
from dmpo_core.training import checkpoint as ckpt

cli_main._add_builtin_commands()
CLI = cli_main.cli

# A few seconds of real training: built-in model, sudoku, fixed givens.
SHORT = [
    "--set", "total_steps=2", "--set", "eval_size=8", "--set", "eval_batch_size=8", "--set", "save_every=1",
    "--set", "rollout.prompts_per_step=2", "--set", "rollout.group_size=2", "--set", "loss.num_iterations=1",
]


def run(*args: str):
    return CliRunner().invoke(CLI, list(args), catch_exceptions=False)


def test_train_runs_through_the_cli_and_prints_base_vs_trained(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--backend", "llada", "--task", "sudoku", "--model", "builtin:sudoku-tiny",
                 "--output-dir", str(out), "--quiet", *SHORT)
    assert result.exit_code == 0, result.output
    assert "held-out accuracy: base" in result.output
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if not r.get("eval")] == [1, 2]
    assert ckpt.latest_checkpoint(out).name == "step-000002"
    # the saved policy is a LLaDA checkpoint in the original layout that the backend reloads
    config = json.loads((out / "checkpoints" / "step-000002" / "policy" / "config.json").read_text())
    assert config["model_type"] == "llada" and "d_model" in config
    # a second run into the same folder is refused; --resume of the finished run is a no-op
    again = CliRunner().invoke(CLI, ["train", "--output-dir", str(out), "--quiet", *SHORT])
    assert again.exit_code == 2 and "already holds a run" in again.output
    resumed = run("train", "--output-dir", str(out), "--quiet", "--resume", *SHORT)
    assert resumed.exit_code == 0, resumed.output
    other = CliRunner().invoke(CLI, ["train", "--output-dir", str(out), "--resume", *SHORT, "--set", "seed=3"])
    assert other.exit_code == 2 and "different config" in other.output
    # plot of that run
    png = run("plot", str(out))
    assert png.exit_code == 0 and (out / "metrics.png").stat().st_size > 1000


def test_resumed_real_run_reaches_the_same_weights(tmp_path):
    data = {"total_steps": 3, "eval_size": 0, "save_every": 1,
            "rollout": {"prompts_per_step": 2, "group_size": 2}, "loss": {"num_iterations": 1}}
    from dmpo.backends import builtin

    from dmpo.cli.configfile import merge

    cfg = TrainConfig.from_dict(merge(builtin.recommended_config("builtin:sudoku-tiny"), data))
    full = build.build_components(cfg)
    train(cfg, full, tmp_path / "full")

    def kill(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, build.build_components(cfg), tmp_path / "killed", on_step=kill)
    resumed = build.build_components(cfg)
    train(cfg, resumed, tmp_path / "killed", resume=True)
    for a, b in zip(full.policy.trainable_parameters(), resumed.policy.trainable_parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backend", "nope"], "unknown backend 'nope'; available: dream, llada"),
        (["--task", "nope"], "unknown task 'nope'; available:"),
        (["--set", "weighting.scheme=nope"], "unknown weighting 'nope'; available: dmpo, dmpo-mean"),
        (["--set", "rollout.sampler=nope"], "unknown sampler 'nope'; available:"),
    ],
)
def test_unknown_names_exit_2_with_one_line_listing_the_choices(tmp_path, args, needle):
    result = CliRunner().invoke(CLI, ["train", "--output-dir", str(tmp_path / "r"), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_invalid_config_reports_all_problems_before_loading_the_model(tmp_path):
    result = CliRunner().invoke(CLI, [
        "train", "--model", str(tmp_path / "no-such-model"), "--output-dir", str(tmp_path / "r"),
        "--set", "rollout.group_size=1", "--set", "rollout.gen_length=10", "--set", "optim.lr=-1",
        "--set", "loss.options.replicates=3", "--set", "bogus.key=1", "--set", "max_minutes=0",
    ])
    assert result.exit_code == 2
    text = result.output
    for needle in ("rollout.group_size=1", "optim.lr=-1", "bogus: unknown key", "max_minutes=0"):
        assert needle in text, text
    assert "no-such-model" not in text  # the model was never touched
    result = CliRunner().invoke(CLI, ["train", "--output-dir", str(tmp_path / "r"), "--set", "loss.options.replicates=3"])
    assert result.exit_code == 2 and "replicates=3" in result.output and "even" in result.output


def test_eval_writes_every_generation_for_audit(tmp_path):
    out = tmp_path / "gens.jsonl"
    result = run("eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--limit", "6", "--batch-size", "4",
                 "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "mean_nfe" in result.output
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(rows) == 6
    assert {"prompt", "completion", "answer", "score", "item"} <= set(rows[0])
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)


def test_generate_prints_a_completion():
    result = run("generate", "--model", "builtin:sudoku-tiny", "--no-chat", "3102200002100320=")
    assert result.exit_code == 0, result.output
    assert len(result.output.strip()) == 16 and result.output.strip().isdigit()


def test_plugins_lists_builtin_components():
    result = run("plugins")
    assert result.exit_code == 0
    for needle in ("llada", "dream", "sudoku", "low-confidence", "dmpo-unbiased", "local"):
        assert needle in result.output


def test_evaluation_can_use_another_sampler_than_the_rollouts():
    base = {"rollout": {"gen_length": 16, "block_length": 16, "steps": 8, "temperature": 1.0,
                        "sampler": "random-remask", "sampler_options": {"record_logp": True}}}
    same = build.plan(TrainConfig.from_dict(base))
    assert type(same.eval_sampler) is type(same.sampler) and same.eval_sampler.remasking == "random"
    assert same.eval_sampler.temperature == 0.0 and same.sampler.temperature == 1.0
    other = build.plan(TrainConfig.from_dict({**base, "eval_sampler": "low-confidence"}))
    assert other.sampler.remasking == "random" and other.sampler.record_logp
    assert other.eval_sampler.remasking == "low_confidence" and not other.eval_sampler.record_logp
    assert other.eval_sampler.temperature == 0.0 and other.eval_sampler.steps == 8


def test_an_unknown_eval_sampler_is_reported_with_the_choices(tmp_path):
    result = CliRunner().invoke(CLI, ["train", "--output-dir", str(tmp_path / "r"), "--set", "eval_sampler=nope"])
    assert result.exit_code == 2
    assert "eval_sampler" in result.output and "low-confidence" in result.output


def test_numbers_without_a_dot_are_numbers_in_config_files_and_sets(tmp_path):
    from dmpo.cli import configfile

    path = tmp_path / "run.yaml"
    path.write_text("optim: {lr: 3e-5}\nweighting: {options: {alpha: 4e-2}}\nrollout: {sampler: fast-dllm}\n")
    data = configfile.read_yaml(path)
    assert data["optim"]["lr"] == 3e-5 and data["weighting"]["options"]["alpha"] == 0.04  # untyped options too
    assert data["rollout"]["sampler"] == "fast-dllm"
    data = configfile.apply_sets(data, ["weighting.options.alpha=1e-1", "loss.options.negative_cap=2E0"])
    assert data["weighting"]["options"]["alpha"] == 0.1 and data["loss"]["options"]["negative_cap"] == 2.0


def test_a_spent_time_budget_says_where_it_stopped_and_how_to_finish(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--output-dir", str(out), "--quiet", *SHORT, "--set", "max_minutes=1e-9")
    assert result.exit_code == 0, result.output
    assert "trained" in result.output and "(step 1)" in result.output  # evaluated where it stopped
    assert "stopped at step 1 of 2: the max_minutes=1e-09 time budget ran out" in result.output
    assert ckpt.latest_checkpoint(out).name == "step-000001"
    # the budget belongs to one invocation: --resume may lift it, and finishes the run
    resumed = run("train", "--output-dir", str(out), "--quiet", "--resume", *SHORT, "--set", "max_minutes=null")
    assert resumed.exit_code == 0, resumed.output
    assert "(step 2)" in resumed.output and "stopped" not in resumed.output
    assert ckpt.latest_checkpoint(out).name == "step-000002"


def test_resume_refuses_a_planted_trainer_state_in_one_line(tmp_path):
    import builtins

    class Payload:
        def __reduce__(self):
            return (builtins.exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')",))

    out = tmp_path / "run"
    first = run("train", "--output-dir", str(out), "--quiet", *SHORT)
    assert first.exit_code == 0, first.output
    for folder in (out / ckpt.CHECKPOINTS).glob("step-*"):  # every checkpoint planted and re-signed
        torch.save({"step": 1, "payload": Payload()}, folder / "trainer.pt")
        (folder / ckpt.CHECKSUMS).write_text(json.dumps(ckpt.checksums(folder)))
    again = CliRunner().invoke(CLI, ["train", "--output-dir", str(out), "--quiet", "--resume", *SHORT])
    assert again.exit_code == 2
    assert "no intact checkpoint" in again.output and "cannot be read safely" in again.output
    assert "Traceback" not in again.output and len(again.output.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "backend_options.dtyp=bfloat16"], "backend_options.dtyp: unknown key; known keys here:"),
        (["--set", "backend_options.dtype=float8"], "backend_options.dtype='float8'"),
        (["--set", "engine_options.zero_stage=3"], "engine_options.zero_stage: unknown key"),
        (["--set", "task_options.blanks=3"], "task_options.blanks: unknown key"),
        (["--set", "weighting.options.alpha=-1"], "weighting.options.alpha=-1"),
        (["--set", "weighting.options.baseline=mean"],
         "weighting.options.baseline='mean': fixed to 'negative' by the name 'dmpo'"),
        (["--set", "rollout.sampler_options.threshold=0.9"], "rollout.sampler_options.threshold: unknown key"),
        (["--set", "rollout.sampler=fast-dllm", "--set", "rollout.sampler_options.threshold=2"],
         "rollout.sampler_options.threshold=2"),
        (["--set", "scoring.method=exact"], "scoring.method=exact: sampler 'low-confidence' records no per-token"),
    ],
)
def test_component_options_are_checked_with_their_full_path_before_the_model_loads(tmp_path, args, needle):
    result = CliRunner().invoke(CLI, ["train", "--output-dir", str(tmp_path / "r"), "--set", "weighting.scheme=dmpo",
                                      *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "rollout.rollout" not in result.output
    assert not (tmp_path / "r").exists()  # nothing written before the checks


def test_a_bad_value_taken_from_rollout_is_reported_under_rollout():
    from dmpo_core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        build.make_sampler("fast-dllm", {"gen_length": 16, "block_length": 5, "temperature": 0.0}, {},
                           path="rollout.sampler_options")
    assert "rollout.block_length=5" in str(err.value) and "sampler_options.block_length" not in str(err.value)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--task-option", "blanks=3"], "--task-option.blanks: unknown key"),
        (["--backend-option", "dtyp=float32"], "--backend-option.dtyp: unknown key"),
        (["--sampler-option", "threshold=0.5"], "--sampler-option.threshold: unknown key"),
        (["--sampler", "fast-dllm", "--sampler-option", "threshold=1.5"], "--sampler-option.threshold=1.5"),
    ],
)
def test_eval_options_are_one_line_errors(args, needle):
    result = CliRunner().invoke(CLI, ["eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_eval_takes_sampler_options():
    result = run("eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--limit", "4", "--batch-size", "4",
                 "--sampler", "fast-dllm", "--sampler-option", "threshold=0.5")
    assert result.exit_code == 0, result.output
    assert "mean_nfe" in result.output


def test_a_builtin_models_task_options_apply_only_to_its_task():
    result = run("eval", "--task", "countdown", "--model", "builtin:sudoku-tiny", "--limit", "2", "--batch-size", "2",
                 "--task-option", "prompt_style=compact", "--gen-length", "16", "--block-length", "16")
    assert result.exit_code == 0, result.output  # the recipe's fixed_givens (a sudoku option) is not passed


def test_plugins_name_shows_a_components_options():
    result = run("plugins", "dmpo-mean")
    assert result.exit_code == 0, result.output
    assert "baseline = 'mean' (fixed by the name)" in result.output
    assert "alpha: float = 0.04" in result.output and "KL temperature" in result.output
    shown = run("plugins", "llada", "--json")
    [entry] = json.loads(shown.output)
    assert {o["name"] for o in entry["options"]} >= {"dtype", "device", "lora", "gradient_checkpointing"}
    missing = CliRunner().invoke(CLI, ["plugins", "no-such-thing"])
    assert missing.exit_code == 2 and "unknown component 'no-such-thing'" in missing.output


#: Each built-in model with its recipe's task (``--model`` alone selects the recipe).
BUILTIN_MODELS = ["builtin:sudoku-tiny", "builtin:countdown-tiny"]


def train_three_steps(out, model: str, *sets: str) -> list[dict]:
    """``dmpo train --model MODEL`` for 3 short steps; the step records of its metrics.jsonl."""
    result = run("train", "--model", model, "--output-dir", str(out), "--quiet", *SHORT, "--set", "total_steps=3",
                 *sets)
    assert result.exit_code == 0, result.output
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("eval") for r in records)  # the base and the trained model were evaluated
    steps = [r for r in records if not r.get("eval")]
    assert [r["step"] for r in steps] == [1, 2, 3]
    return steps


@pytest.mark.parametrize("model", ["builtin:countdown-tiny"])  # sudoku-tiny: the tests above and test_contracts_only
@pytest.mark.parametrize(("sets", "stats"), [
    ((), {"ess_mean"}),  # the recipe: dmpo-mean weights, WDCE
    (("--set", "loss.objective=ddo", "--set", "weighting.scheme=dmpo"), {"ess_mean"}),
], ids=["wdce", "ddo"])
def test_dmpo_objectives_train_three_steps_on_each_builtin_model(tmp_path, model, sets, stats):
    steps = train_three_steps(tmp_path / "run", model, *sets)
    assert stats <= set(steps[-1]) and all(r["loss"] == r["loss"] for r in steps)  # finite (not NaN) losses


@pytest.mark.parametrize("model", BUILTIN_MODELS)
def test_diffu_grpo_trains_three_steps_on_the_builtin_model(tmp_path, model):
    steps = train_three_steps(tmp_path / "grpo", model, "--set", "weighting.scheme=grpo",
                              "--set", "loss.objective=diffu-grpo", "--set", "loss.num_iterations=2")
    assert {"kl_mean", "ratio_mean", "clip_fraction", "adv_abs_mean"} <= set(steps[-1])
    assert "time/logp" in steps[-1] and "ess_mean" not in steps[-1]  # no DMPO statistics, no ELBO estimate


def test_naming_another_component_drops_the_options_written_for_the_old_one(tmp_path):
    from dmpo.cli.commands_train import resolve_config

    cfg = resolve_config(None, "countdown", None, None, ("weighting.scheme=grpo", "rollout.sampler=roar"))
    assert cfg.weighting.options == {} and "fixed_givens" not in cfg.task_options
    assert cfg.rollout.sampler_options == {}
    kept = resolve_config(None, None, None, None, ("weighting.options.alpha=0.5",))
    assert kept.weighting.scheme == "dmpo-mean" and kept.weighting.options == {"alpha": 0.5}
    assert kept.task_options == {"prompt_style": "compact", "fixed_givens": True}


def test_lm_eval_without_the_extra_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval.__main__", None)  # an import of it fails as if not installed
    result = CliRunner().invoke(cli_main.cli, ["lm-eval", "run", "--tasks", "x"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: lm-eval: is not installed; pip install 'dllm-dmpo[lm-eval]'"
