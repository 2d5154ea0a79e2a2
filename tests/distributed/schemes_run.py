"""Two training steps of the built-in model with every registered weighting scheme, on however
many ranks this is launched with; the main rank saves the weights and metrics of each.

    python -m torch.distributed.run --nproc-per-node 2 schemes_run.py OUT ddp
    python schemes_run.py OUT local          # one process, keyed randomness
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dmpo.backends import builtin
from dmpo_core.registry import get_registry
from dmpo_core.training import TrainConfig, train
from dmpo_core.training.build import build_components


def main(out: Path, engine: str) -> None:
    names = [n for n in get_registry().names("weighting") if n != "example-tempered"]
    for name in names:
        data = builtin.recommended_config("builtin:sudoku-tiny")
        data.update({"total_steps": 2, "eval_size": 0, "save_every": 0, "max_minutes": None, "seed": 3,
                     "engine": engine, "engine_options": {"rng": "keyed"} if engine == "local" else {}})
        data["rollout"] = {**data["rollout"], "prompts_per_step": 4, "group_size": 4}
        data["weighting"] = {"scheme": name, "options": {}}
        cfg = TrainConfig.from_dict(data)
        comp = build_components(cfg)
        last = train(cfg, comp, out / name)
        if comp.engine.is_main:
            weights = [p.detach().clone() for p in comp.policy.trainable_parameters()]
            torch.save({"weights": weights, "metrics": last}, out / f"{name}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
