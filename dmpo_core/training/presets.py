"""Named config presets: partial training configs layered over a model's recipe.

``paper`` reproduces the EFFECTIVE update of the official DMPO code in its released
configuration (docs/concepts.md section 7), not only its numbers. The official loss is a per-GPU
sum without our ``1/B``, which in its released layout is 0.25x our loss (measured on the
same inputs; the weights, advantages and WDCE otherwise agree to 1e-7). AdamW does not see
the scale of the loss, but the gradient-norm clip does: its clip 0.2 acts on a gradient 0.25x
ours, which is our clip 0.8. The preset therefore scales the loss by 0.25
(``loss.options.loss_scale``) and keeps the clip at 0.2, so the clip bites exactly where the
official code's does, and a test checks that its update equals ours with the clip at 0.8.

What the preset takes from the released configuration: the negative baseline (scheme
``dmpo``, strength 1), alpha 0.04 with the adaptive coefficient off, G = 16, 8 gradient steps
per rollout batch, R = 4 antithetic clamped masks for the loss and the ELBO, the reference
synced every 64 steps, rollout temperature 0.2, AdamW betas (0.9, 0.99) with weight decay
0.1, clip 0.2 on the 0.25-scaled loss. What it keeps from the model's recipe: the model, the
task, the lengths and decoding steps, prompts per step, the learning rate (1e-6 is a LoRA
rate for an 8B model; a tiny model trained in full does not move at it) and the run length.
"""

from __future__ import annotations

from typing import Any

from dmpo_core.errors import UnknownNameError

PAPER_LOSS_SCALE = 0.25
"""The official code's loss over ours in its released layout (per-GPU sum, no 1/B)."""
PAPER_GRAD_CLIP = 0.2
"""The released gradient-norm clip, applied to the 0.25-scaled loss (= 0.8 on ours)."""

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "ref_sync_every": 64,
        "rollout": {"group_size": 16, "temperature": 0.2},
        "scoring": {"method": "elbo", "replicates": 4, "antithetic": True},
        "weighting": {"scheme": "dmpo", "options": {"alpha": 0.04, "lam": 1.0, "coeff": 1.0, "adaptive": False}},
        "loss": {"objective": "wdce", "num_iterations": 8,
                 "options": {"replicates": 4, "antithetic": True, "clamp": True, "loss_scale": PAPER_LOSS_SCALE}},
        "optim": {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": PAPER_GRAD_CLIP},
    },
}
"""``name -> partial config``; ``dmpo train --preset NAME`` layers it over the model's recipe."""


def preset(name: str) -> dict[str, Any]:
    """A copy of the preset ``name``'s partial config.

    Raises:
        UnknownNameError: no such preset.
    """
    import copy

    if name not in PRESETS:
        raise UnknownNameError("preset", name, sorted(PRESETS))
    return copy.deepcopy(PRESETS[name])
