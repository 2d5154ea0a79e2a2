"""``dmpo train``: RL fine-tuning of a diffusion LM on a task."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
from pathlib import Path

import click

from dmpo_core.errors import ConfigError
from dmpo_core.training.config import TrainConfig
from dmpo_core.training.runlock import LOCK_NAME, RunLock
from dmpo_core.training.signals import GracefulStop, exit_code
from dmpo.cli import configfile, recipes

# torch, the registry and the progress bar are imported in the command, after the config is
# read: `--help` and config errors answer without them.


def resolve_config(backend, task, model, config_file, sets, preset=None, engine=None) -> TrainConfig:
    """Built-in model's recipe < the chosen backend's and task's recommended configs (plugins)
    < --preset < --config file < --backend/--task/--model < --set (see :mod:`dmpo.cli.recipes`)."""
    from dmpo_core.training.presets import preset as named_preset

    data: dict = {}
    file_data = configfile.read_yaml(config_file) if config_file else {}
    flags = {k: v for k, v in (("backend", backend), ("task", task), ("model", model), ("engine", engine)) if v}
    user = configfile.apply_sets(copy.deepcopy(configfile.merge(file_data, flags)), sets)
    recipe = recipes.recipe_of(recipes.chosen("model", user, {}))
    data = configfile.layer(data, recipe)
    for layer in recipes.plugin_layers(user, recipe):
        data = configfile.layer(data, layer)
    data = configfile.layer(data, named_preset(preset) if preset else {})
    data = configfile.layer(data, file_data)
    data = configfile.layer(data, flags)
    data = configfile.drop_stale_options(data, configfile.apply_sets({}, sets))
    data = configfile.apply_sets(data, sets)
    return TrainConfig.from_dict(data, source="training config")


#: Keys that belong to one invocation, not to the run: ``--resume`` may change them.
PER_INVOCATION_KEYS = frozenset({"max_minutes"})


def check_output_dir(out: Path, cfg: TrainConfig, *, resume: bool, overwrite: bool, clear: bool = True) -> None:
    """Refuse to mix two runs in one folder (a resumed run must have the same config, but for
    :data:`PER_INVOCATION_KEYS`); with ``--overwrite`` and ``clear``, empty the folder but for
    its lock (call that only while holding the lock)."""
    if resume and overwrite:
        raise ConfigError(["--resume continues the run in --output-dir and --overwrite deletes it; pass one of them"],
                          source="dmpo train")
    from dmpo_core.training import checkpoint as ckpt

    existing = ckpt.read_config(out)
    holds_run = existing is not None or (out / "metrics.jsonl").exists()
    if not holds_run:
        if resume:
            raise ConfigError([f"{out} holds no run to resume (no config.json); check the folder name, or drop "
                               "--resume to start a run there"], source="--output-dir")
        return
    if overwrite:
        if clear:
            for child in out.iterdir():
                if child.name != LOCK_NAME:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        return
    if not resume:
        raise ConfigError([f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it"],
                          source="--output-dir")
    wanted = cfg.to_dict()
    changed = sorted(k for k in set(existing or {}) | set(wanted)
                     if k not in PER_INVOCATION_KEYS and (existing or {}).get(k) != wanted.get(k))
    if existing is not None and changed:
        raise ConfigError([f"{out} holds a run with a different config (differs in: {', '.join(changed)}); "
                           f"use the same options to --resume, or --overwrite"], source="--output-dir")


@click.command()
@click.option("--backend", default=None, help="Registered backend (llada, dream, ...). Default: llada.")
@click.option("--task", default=None, help="Registered task (sudoku, countdown, gsm8k, math500, ...). Default: sudoku.")
@click.option("--model", default=None,
              help="Checkpoint folder, hub id, or builtin:NAME. Default: builtin:sudoku-tiny, a small model "
                   "shipped with dmpo (its tuned training config is used as the base config).")
@click.option("--engine", default=None,
              help="Registered engine: local (default: one process), ddp (whole weights per rank) or deepspeed "
                   "(ZeRO-3); the multi-rank ones run under torchrun or the deepspeed launcher, see docs/distributed.md.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML file with config keys (see docs: total_steps, rollout.*, weighting.*, loss.*, optim.* ...).")
@click.option("--preset", default=None,
              help="Named config layered over the model's recipe: paper (the official DMPO code's update).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one config key, e.g. --set optim.lr=1e-4 --set rollout.group_size=8 (repeatable).")
@click.option("--output-dir", type=click.Path(file_okay=False), default="runs/latest", show_default=True,
              help="Run folder: config, metrics.jsonl, checkpoints.")
@click.option("--resume", is_flag=True, help="Continue the run in --output-dir from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete a run already in --output-dir and start afresh.")
@click.option("--quiet", is_flag=True, help="No progress bar; print one summary line per evaluation.")
def train(backend, task, model, engine, config_file, preset, sets, output_dir, resume, overwrite, quiet) -> None:
    """Fine-tune a diffusion LM with DMPO (or another registered weighting scheme/objective).

    Each step samples G completions for B prompts, scores them, estimates the
    log-likelihood ratio to the reference, weights the completions toward the
    reward-tilted target and takes num_iterations gradient steps of the weighted
    denoising cross-entropy. The whole config is checked before the model is loaded.
    """
    cfg = resolve_config(backend, task, model, config_file, sets, preset, engine)
    out = Path(output_dir)
    from dmpo_core.training import train as run_training
    from dmpo_core.training.build import build_components, plan
    from dmpo.cli.progress import TrainProgress

    checked = plan(cfg)  # every name and option checked before the model loads
    check_launch(cfg)
    if launch_rank() != 0:  # another rank of a launch: the main rank owns the folder and the output
        comp = build_components(cfg, checked=checked)
        with GracefulStop() as signals:
            run_training(cfg, comp, out, resume=resume, stop=signals.requested)
        return
    lock = RunLock(out)
    lock.check_free()  # a live run there is the first thing to say
    check_output_dir(out, cfg, resume=resume, overwrite=overwrite, clear=False)  # nothing written yet
    with lock:  # no other process writes this run until this one ends
        check_output_dir(out, cfg, resume=resume, overwrite=overwrite)
        comp = build_components(cfg, checked=checked)
        with GracefulStop() as signals, TrainProgress(total=cfg.total_steps, quiet=quiet) as bar:
            last = run_training(cfg, comp, out, resume=resume, on_step=bar.update, on_eval=bar.note_eval,
                                on_notice=bar.note, stop=signals.requested)
    click.echo(summarize(out))
    if last.get("stopped") in ("SIGINT", "SIGTERM"):
        click.echo(f"stopped at step {last['step']} of {cfg.total_steps} by {last['stopped']}, checkpoint saved; "
                   f"continue with: dmpo train {_resume_args(backend, task, model, config_file, sets, out, preset, engine)}",
                   err=True)
        raise SystemExit(exit_code(last["stopped"]))
    if last.get("stopped") == "max_minutes":
        click.echo(f"stopped at step {last['step']} of {cfg.total_steps}: the max_minutes={cfg.max_minutes:g} time "
                   f"budget ran out (this machine is slower than the recipe assumed); run the same command with "
                   f"--resume to finish (--set max_minutes=null lifts the budget)")


def check_launch(cfg: TrainConfig) -> None:
    """Under a launcher with several ranks: an engine that shares a step, and whole groups per rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return
    if cfg.engine == "local":
        raise ConfigError([f"the launcher started {world} ranks but engine 'local' trains in one process (each rank "
                           f"would train alone into the same folder); use --engine ddp or --engine deepspeed"],
                          source="--engine")
    if cfg.rollout.prompts_per_step % world:
        raise ConfigError([f"rollout.prompts_per_step={cfg.rollout.prompts_per_step} does not split into {world} "
                           f"ranks of whole groups; use a multiple of {world}"], source="training config")


def launch_rank() -> int:
    """This process's ``RANK`` under torchrun or the deepspeed launcher (0 without one)."""
    return int(os.environ.get("RANK", "0"))


def _resume_args(backend, task, model, config_file, sets, out: Path, preset=None, engine=None) -> str:
    """The arguments that continue this run: the same options plus ``--resume``."""
    parts = [f"--{k} {shlex.quote(v)}" for k, v in (("backend", backend), ("task", task), ("model", model),
                                                      ("engine", engine), ("config", config_file),
                                                      ("preset", preset)) if v]
    parts += [f"--set {shlex.quote(s)}" for s in sets]
    return " ".join([*parts, f"--output-dir {shlex.quote(str(out))}", "--resume"])


def summarize(run_dir: Path) -> str:
    """Base vs trained accuracy from the run's evaluation records."""
    path = run_dir / "metrics.jsonl"
    evals = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"eval": true' in line:
            try:
                evals.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not evals:
        return f"done; metrics in {path}"
    key = next((k for k in evals[0] if k.startswith("eval_") and k not in ("eval_mean_nfe", "eval_seconds", "eval_n")),
               None)
    first, last = evals[0], evals[-1]
    if key is None:
        return f"done; metrics in {path}"
    name = key[len("eval_"):]
    return (f"held-out {name}: base {100 * first[key]:.1f}% (step {first['step']}) -> trained "
            f"{100 * last[key]:.1f}% (step {last['step']}), change {100 * (last[key] - first[key]):+.1f} points; "
            f"run folder {run_dir}")
