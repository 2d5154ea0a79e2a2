"""``dmpo eval`` (accuracy and NFE on a task's held-out split) and ``dmpo generate`` (one prompt)."""

from __future__ import annotations

import json
import sys
import random
from pathlib import Path

import attrs
import click

from dmpo_core.errors import ConfigError
from dmpo.cli import configfile, model_choice

# torch and the registry are imported inside the commands: `--help` answers without them.


def _options(sets: tuple[str, ...]) -> dict:
    return configfile.apply_sets({}, sets)


def _sampler(settings, temperature: float):
    """The sampler of ``settings`` (lengths, steps, its own options) at ``temperature``, checked
    against its options class (an option it does not have is a one-line error)."""
    from dmpo_core.training.build import make_sampler

    rollout = {"gen_length": settings.gen_length, "block_length": settings.block_length,
               "temperature": temperature, "steps": settings.steps}
    return make_sampler(settings.sampler, rollout, settings.sampler_options, path="--sampler-option")


def _settings(model, adapter, task, gen_length, block_length, steps, sampler, remasking, sampler_sets, backend,
              task_sets=()):
    """The model to load and the settings to run it with: the given options over the recipe
    the checkpoint (or built-in model) carries (their differences: :func:`_say_differences`)."""
    bad = [f"--{name}={value}: must be >= 1" for name, value in (("gen-length", gen_length),
                                                                 ("block-length", block_length))
           if value is not None and value < 1]
    if bad:
        raise ConfigError(bad, source="sampling options")
    choice = model_choice.choose_model(model, adapter, backend=backend, task=task)
    sampler_options = _options(sampler_sets)
    if remasking:
        sampler_options["remasking"] = remasking
    from dmpo_core.registry import get_registry

    task_fields = get_registry().get("task", task).option_fields() if task is not None else {}
    settings = model_choice.settings_for(choice, task=task, backend=backend, gen_length=gen_length,
                                         block_length=block_length, steps=steps, sampler=sampler,
                                         sampler_options=sampler_options, task_options=_options(task_sets),
                                         task_accepts=task_fields.__contains__)
    return choice, settings


def _with_protocol(protocol, settings_of, block_length, steps, temperature, sampler, remasking):
    """The run settings and the decoding of a protocol preset (dmpo_core.protocols): ``default``
    keeps the recipe's settings; a paper's preset replaces them, explicit options winning."""
    from dmpo_core.protocols import preset, resolve_decoding

    preset(protocol)  # an unknown name is a one-line error before anything else
    choice, run = settings_of(block_length, steps, sampler, remasking)
    if protocol != "default":
        decoding = resolve_decoding(protocol, gen_length=run.gen_length, block_length=block_length, steps=steps,
                                    temperature=temperature, sampler=sampler, remasking=remasking)
        choice, run = settings_of(decoding.block_length, decoding.steps, decoding.sampler, decoding.remasking)
    decoding = resolve_decoding(protocol, gen_length=run.gen_length, block_length=run.block_length, steps=run.steps,
                                temperature=temperature, sampler=run.sampler)
    explicit = tuple(k for k, v in (("block_length", block_length), ("steps", steps), ("temperature", temperature),
                                     ("sampler", sampler), ("remasking", remasking)) if v is not None)
    return choice, run, attrs.evolve(decoding, explicit=explicit)


def _say_differences(settings) -> None:
    """The one line naming the given options that differ from the recipe (once they are all valid)."""
    if settings.note:
        click.echo(settings.note, err=True)


SAMPLING_OPTIONS = [
    click.option("--gen-length", type=int, default=None,
                 help="Completion length L (default: the checkpoint's recipe, else 256)."),
    click.option("--block-length", type=int, default=None,
                 help="Semi-autoregressive block length (default: the recipe's, else 32)."),
    click.option("--protocol", default="default", show_default=True, metavar="NAME",
                 help="Evaluation protocol preset: d1 (steps gen_length/2, block 32, greedy), dmpo (steps gen_length, "
                      "block 32, greedy) or default (the recipe's); explicit options win (docs/protocols.md)."),
    click.option("--steps", type=int, default=None,
                 help="Denoising steps (default: the protocol's or the recipe's, else gen_length/2 as in d1; DMPO "
                      "uses gen_length)."),
    click.option("--temperature", type=float, default=None, help="0 = greedy decoding (the default)."),
    click.option("--remasking", type=click.Choice(["low_confidence", "random"]), default=None,
                 help="Which positions a step commits (low-confidence sampler; default low_confidence)."),
    click.option("--sampler", default=None, help="Registered sampler (default: the recipe's, else low-confidence)."),
    click.option("--sampler-option", "sampler_sets", multiple=True, metavar="KEY=VALUE",
                 help="Sampler option, e.g. threshold=0.9 (fast-dllm) or gamma=0.1 (eb); `dmpo plugins SAMPLER` "
                      "lists them (repeatable)."),
    click.option("--backend", default=None, help="Registered backend (default: the recipe's, else llada)."),
    click.option("--adapter", type=click.Path(file_okay=False), default=None,
                 help="A peft LoRA adapter folder applied to --model (a LoRA run's checkpoints/step-N/adapter)."),
    click.option("--backend-option", "backend_sets", multiple=True, metavar="KEY=VALUE",
                 help="Backend option, e.g. dtype=bfloat16 or device=cuda (repeatable)."),
]


def sampling_options(fn):
    for opt in reversed(SAMPLING_OPTIONS):
        fn = opt(fn)
    return fn


@click.command("eval")
@click.option("--task", required=True, help="Registered task.")
@click.option("--model", required=True, help="Checkpoint folder, LoRA adapter folder, hub id, or builtin:NAME.")
@sampling_options
@click.option("--task-option", "task_sets", multiple=True, metavar="KEY=VALUE",
              help="Task option, e.g. prompt_style=compact or csv_path=data.csv (repeatable).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Prompts per sampler call.")
@click.option("--limit", type=int, default=None, help="Evaluate a random subsample of this many items.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subsample and of sampling.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="JSON-lines file with every generation, its parsed answer and score (for audits).")
@click.option("--sweep", default=None, metavar="KEY=V1,V2,...",
              help="Evaluate once per value of one sampler option, e.g. threshold=0.5,0.7,0.9 or cache=none,dual.")
@click.option("--sweep-output", type=click.Path(dir_okay=False), default=None,
              help="Sweep table (.csv, else JSON lines; one row per value) and a PNG plot next to it.")
def eval_cmd(task, model, gen_length, block_length, protocol, steps, temperature, remasking, sampler, sampler_sets,
             backend, adapter, backend_sets, task_sets, batch_size, limit, seed, output, sweep, sweep_output) -> None:
    """Evaluate a model on a task's held-out split: accuracy, mean NFE per item and time.

    Every output carries the full protocol (sampler and options, lengths, prompt style, metric
    versions, data size and fingerprint, seed): a `protocol:` line, and each --output record.

    A checkpoint saved by `dmpo train` (or a built-in model) brings its recipe: prompt style
    and task options, lengths, steps, sampler and backend; options given here win, and any
    difference from the recipe is said in one line.
    """
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ConfigError(["--batch-size and --limit must be >= 1"], source="dmpo eval")
    import torch

    from dmpo_core.registry import get_registry
    from dmpo_core.training.build import load_policy
    from dmpo_core.training.evaluate import evaluate

    from dmpo_core.protocols import evaluation_protocol

    choice, run, decoding = _with_protocol(
        protocol, lambda b, s, sa, r: _settings(model, adapter, task, gen_length, b, s, sa, r, sampler_sets, backend,
                                                task_sets), block_length, steps, temperature, sampler, remasking)
    temperature = decoding.temperature
    gen_length = run.gen_length
    task_obj = get_registry().create("task", task, "--task-option", **run.task_options)
    samp = _sampler(run, temperature)
    if sweep is not None or sweep_output is not None:
        from dmpo.cli import eval_sweep

        if sweep is None:
            raise ConfigError(["--sweep-output needs --sweep KEY=V1,V2,..."], source="dmpo eval")
        key, values = eval_sweep.parse_sweep(sweep)
        settings = [(v, _sampler(attrs.evolve(run, sampler_options={**run.sampler_options,
                                                                    **_options((f"{key}={json.dumps(v)}",))}),
                                 temperature)) for v in values]  # all checked first
    _say_differences(run)
    items = list(task_obj.test_items())
    if limit is not None and limit < len(items):
        items = random.Random(seed).sample(items, limit)
    policy = load_policy(run.backend, choice.model, model_choice.backend_options(choice, _options(backend_sets)),
                         path="--backend-option")
    if sweep is not None:
        rows = []
        for value, setting in settings:
            with click.progressbar(length=len(items), label=f"eval {key}={value}", file=sys.stderr) as bar:
                metrics, _ = evaluate(policy, task_obj, setting, items, batch_size=batch_size, gen_length=gen_length,
                                      generator=torch.Generator().manual_seed(seed), progress=bar.update)
            rows.append(eval_sweep.sweep_row(key, value, metrics, items=len(items), gen_length=gen_length))
            click.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()))
        if sweep_output:
            table = eval_sweep.write_rows(sweep_output, rows)
            png = eval_sweep.plot_rows(table.with_suffix(".png"), key, rows)
            click.echo(f"sweep table {table}" + (f", plot {png}" if png else " (no plot: matplotlib missing)"))
        return
    with click.progressbar(length=len(items), label="eval", file=sys.stderr) as bar:
        metrics, records = evaluate(policy, task_obj, samp, items, batch_size=batch_size, gen_length=gen_length,
                                    generator=torch.Generator().manual_seed(seed), progress=bar.update)
    record = evaluation_protocol(
        task_name=task, task=task_obj, sampler_name=run.sampler, sampler=samp, gen_length=gen_length, items=items,
        seed=seed, batch_size=batch_size, preset=decoding.preset, explicit=decoding.explicit,
        extra={"model": model, "limit": limit})
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps({**rec, "protocol": record}) + "\n")
    shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    click.echo(f"{task} on {model} ({len(items)} items): {shown}")
    click.echo(f"protocol: {json.dumps(record, sort_keys=True)}")


@click.command()
@click.argument("prompt")
@click.option("--model", required=True, help="Checkpoint folder, LoRA adapter folder, hub id, or builtin:NAME.")
@sampling_options
@click.option("--chat/--no-chat", default=None,
              help="Wrap the prompt in the tokenizer's chat template when it has one (default: as the recipe's "
                   "prompt style says: not for `compact`, else yes).")
@click.option("--seed", type=int, default=0, show_default=True)
def generate(prompt, model, gen_length, block_length, protocol, steps, temperature, remasking, sampler, sampler_sets,
             backend, adapter, backend_sets, chat, seed) -> None:
    """Complete one PROMPT and print the completion."""
    import torch

    from dmpo_core.training.build import load_policy
    from dmpo_core.training.rollout import decode_completions, encode_prompts

    choice, settings, decoding = _with_protocol(
        protocol, lambda b, s, sa, r: _settings(model, adapter, None, gen_length, b, s, sa, r, sampler_sets, backend),
        block_length, steps, temperature, sampler, remasking)
    samp = _sampler(settings, decoding.temperature)
    _say_differences(settings)
    policy = load_policy(settings.backend, choice.model, model_choice.backend_options(choice, _options(backend_sets)),
                         path="--backend-option")
    tok = policy.tokenizer
    text = prompt
    if model_choice.wants_chat(choice, chat) and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids, mask = encode_prompts(tok, [text], policy.pad_id)  # [1, P]
    with torch.no_grad():
        out = samp(policy.logits, ids.to(policy.device), mask.to(policy.device), mask_id=policy.mask_id,
                   generator=torch.Generator().manual_seed(seed))
    click.echo(decode_completions(tok, out.completion_ids.cpu(), policy.stop_ids)[0])
