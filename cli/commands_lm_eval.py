"""``dmpo lm-eval``: lm-evaluation-harness's own command line with dmpo's model registered.

lm-eval finds models only in its registry and has no plugin discovery for them, so its
``lm-eval`` command does not know the model ``dmpo`` unless something imports
:mod:`dmpo.backends.lm_eval_bridge` first. This command does that import and hands every
argument to lm-eval unchanged: ``dmpo lm-eval run --model dmpo --model_args model=CKPT ...``
is ``lm-eval run ...`` with dmpo policies available.
"""

from __future__ import annotations

import sys

import click

from dmpo_core.errors import DataError


@click.command("lm-eval", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                            "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lm_eval_cmd(args: tuple[str, ...]) -> None:
    """Run lm-evaluation-harness with the model `dmpo` registered (every ARG goes to lm-eval;
    `dmpo lm-eval --help` shows lm-eval's help). Needs the extra: pip install 'dllm-dmpo[lm-eval]'.

    Example: dmpo lm-eval run --model dmpo --model_args model=runs/x/checkpoints/step-000100/policy,sampler=fast-dllm
    --tasks gsm8k --limit 50 (docs/lm-eval.md lists the model arguments)."""
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError as err:
        raise DataError("lm-eval", "is not installed; pip install 'dllm-dmpo[lm-eval]'") from err
    import dmpo.backends.lm_eval_bridge  # noqa: F401  (registers the model "dmpo")

    saved = sys.argv
    sys.argv = ["lm-eval", *args]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
