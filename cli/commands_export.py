"""``dmpo export``: convert a saved policy into another checkpoint layout."""

from __future__ import annotations

import click

from dmpo.cli import configfile, model_choice

#: ``--format`` names and the ``Policy.save`` format of each.
FORMATS = {"hf": "converted", "original": "original"}


@click.command("export")
@click.argument("checkpoint")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help="hf: the stock transformers layout (AutoModelForCausalLM/LlamaForCausalLM.from_pretrained load "
                   "it without dmpo); original: the family's published layout (LLaDA's own code loads it).")
@click.option("--output", type=click.Path(file_okay=False), required=True,
              help="Folder to write (replaced atomically when it exists).")
@click.option("--adapter", type=click.Path(file_okay=False), default=None,
              help="A peft LoRA adapter folder to merge into CHECKPOINT (or give the adapter folder as CHECKPOINT).")
@click.option("--backend", default=None, help="Registered backend (default: the checkpoint's recipe, else llada).")
@click.option("--backend-option", "backend_sets", multiple=True, metavar="KEY=VALUE",
              help="Backend option, e.g. dtype=bfloat16 (repeatable).")
def export(checkpoint, fmt, output, adapter, backend, backend_sets) -> None:
    """Write CHECKPOINT (a policy folder, a LoRA adapter folder, a hub id or builtin:NAME) in
    another layout, with its recipe (dmpo_recipe.json), so `dmpo eval --model OUTPUT` runs it
    as it was trained. An adapter is merged into the written weights."""
    from dmpo_core.registry import get_registry
    from dmpo_core.training.build import load_policy
    from dmpo_core.training.recipe import write_recipe

    choice = model_choice.choose_model(checkpoint, adapter)
    chosen_backend = backend or (choice.recipe.backend if choice.recipe is not None else "llada")
    options = model_choice.backend_options(choice, configfile.apply_sets({}, backend_sets))
    if "reference" in get_registry().get("backend", chosen_backend).option_fields():
        options.setdefault("reference", False)  # a conversion needs no reference copy
    policy = load_policy(chosen_backend, choice.model, options, path="--backend-option")
    policy.save(output, format=FORMATS[fmt])
    if choice.recipe is not None:
        write_recipe(output, choice.recipe)
    click.echo(f"wrote {checkpoint} in the {fmt} layout to {output}")
