"""What a second rank buys on the built-in model, and what ZeRO-3's whole-weight gather costs.

    python bench/distributed.py [--repeats 3] [--steps 4] [--out bench-results/distributed]

Runs, interleaved ``--repeats`` times (so machine noise hits every variant alike), the shipped
``builtin:sudoku-tiny`` recipe for ``--steps`` steps in four ways: one process with the local
engine (keyed randomness), and ``dmpo``'s deepspeed engine with ZeRO-3 on 1 and 2 CPU ranks
(every tensor partitioned: ``persistence_threshold=0``) and ZeRO-2 on 2 ranks. Per variant it
prints the median step time over the steps after the first (warm-up) and its split
(``time/<stage>`` of the loop's metrics), and, from the engine's own timers, the seconds of the
``full_parameters`` gather per step. Ratios are against the one-process run of the same repeat.

It then measures, on 2 ZeRO-3 ranks, the two ways of giving generation whole weights:
``gather`` (what the engine does: gather the shards for the rollout, release them after) and
``copy`` (a separate full rollout copy per rank, refreshed after each update: the same gather,
plus a copy into the replica, plus the replica's bytes kept on every rank).

Nothing here needs a GPU; ranks are CPU processes (gloo) sharing this machine's cores, so the
2-rank figures say what the communication and the split cost, not what GPUs would gain.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STAGES = ("rollout", "reward", "logp", "weights", "loss_fwd_bwd", "optimizer", "other")
VARIANTS = {
    "1 process, local": (1, "local", {"rng": "keyed"}),
    "1 rank, ZeRO-3": (1, "deepspeed", {"persistence_threshold": 0}),
    "2 ranks, ZeRO-3": (2, "deepspeed", {"persistence_threshold": 0}),
    "2 ranks, ZeRO-2": (2, "deepspeed", {"zero_stage": 2}),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker(out: Path, engine: str, options: dict[str, Any], steps: int) -> None:
    """One run (on however many ranks this is launched with); the main rank writes its
    metrics records and the engine's timers to ``out``."""
    import torch

    from dmpo.backends import builtin
    from dmpo_core.training import TrainConfig, train
    from dmpo_core.training.build import build_components

    torch.set_num_threads(1)
    data = builtin.recommended_config("builtin:sudoku-tiny")
    data.update({"total_steps": steps, "eval_size": 0, "save_every": 0, "max_minutes": None, "seed": 0,
                 "engine": engine, "engine_options": options})
    cfg = TrainConfig.from_dict(data)
    comp = build_components(cfg)
    run = out.with_suffix("")
    train(cfg, comp, run)
    stats = dict(getattr(comp.engine, "stats", {}))
    gathers = gather_vs_copy(comp) if engine == "deepspeed" and comp.engine.world_size > 1 else None
    if comp.engine.is_main:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out.write_text(json.dumps({"records": [r for r in rows if "reward_mean" in r], "stats": stats,
                                   "gather_vs_copy": gathers, "world_size": comp.engine.world_size}))


def gather_vs_copy(comp: Any, repeats: int = 20) -> dict[str, float]:
    """Seconds of one whole-weight gather (enter and leave ``full_parameters``), of refreshing a
    separate rollout replica from the gathered weights, and the replica's bytes per rank."""
    import torch

    engine, policy = comp.engine, comp.policy
    with engine.full_parameters(policy):
        replica = copy.deepcopy(policy.model)  # what a rollout copy per rank would keep
    replica_bytes = sum(p.numel() * p.element_size() for p in replica.parameters())
    gather, refresh = [], []
    for _ in range(repeats):
        engine.barrier()
        t0 = time.perf_counter()
        with engine.full_parameters(policy):
            t1 = time.perf_counter()
            with torch.no_grad():
                for r, p in zip(replica.parameters(), policy.model.parameters(), strict=True):
                    r.copy_(p)
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        gather.append((t1 - t0) + (t3 - t2))
        refresh.append(t2 - t1)
    return {"gather_s": statistics.median(gather), "replica_copy_s": statistics.median(refresh),
            "replica_bytes": replica_bytes, "params": sum(p.numel() for p in replica.parameters())}


def launch(ranks: int, out: Path, engine: str, options: dict[str, Any], steps: int) -> None:
    """Run :func:`worker` in one process (no launcher) or under torchrun on ``ranks`` CPU ranks."""
    args = [__file__, "--worker", str(out), "--engine", engine, "--options", json.dumps(options),
            "--steps", str(steps)]
    cmd = [sys.executable, *args] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
        "--master-port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[-8:])} failed:\n{done.stderr[-3000:]}")


def summarise(result: dict[str, Any]) -> dict[str, float]:
    """Median seconds per stage over the steps after the first, and the gather per step."""
    rows = result["records"][1:] or result["records"]
    out = {k: statistics.median(r.get(f"time/{k}", 0.0) for r in rows) for k in (*STAGES, "total")}
    steps = max(len(result["records"]), 1)
    out["gather"] = result["stats"].get("gather_seconds", 0.0) / steps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="bench-results/distributed")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker), args.engine, json.loads(args.options), args.steps)
        return
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    gathers: list[dict[str, float]] = []
    for repeat in range(args.repeats):
        for name, (ranks, engine, options) in VARIANTS.items():
            out = folder / f"r{repeat}-{name.replace(' ', '').replace(',', '-')}.json"
            launch(ranks, out, engine, options, args.steps)
            result = json.loads(out.read_text())
            results[name].append(summarise(result))
            if result.get("gather_vs_copy"):
                gathers.append(result["gather_vs_copy"])
            print(f"repeat {repeat + 1}/{args.repeats}: {name}: {results[name][-1]['total']:.3f} s/step",
                  file=sys.stderr)
    print(f"`python bench/distributed.py --repeats {args.repeats} --steps {args.steps}`, "
          f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()} with {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}; medians over repeats of the median step after the first\n")
    head = ["variant", "step s", "x 1 process", *STAGES, "gather"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    base = statistics.median(r["total"] for r in results["1 process, local"])
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        cells = [name, f"{med['total']:.3f}", f"{med['total'] / base:.2f}",
                 *(f"{med[k]:.3f}" for k in STAGES), f"{med['gather']:.4f}"]
        print("| " + " | ".join(cells) + " |")
    if gathers:
        g = {k: statistics.median(x[k] for x in gathers) for k in gathers[0]}
        print(f"\nWhole weights for generation, 2 ZeRO-3 ranks, {int(g['params']):,} parameters: gather "
              f"{g['gather_s'] * 1e3:.2f} ms per rollout; a separate rollout copy per rank needs the same gather "
              f"after each update plus {g['replica_copy_s'] * 1e3:.2f} ms to refresh the copy "
              f"({(g['gather_s'] + g['replica_copy_s']) / g['gather_s']:.2f}x the gather) and keeps "
              f"{g['replica_bytes'] / 2**20:.2f} MiB ({g['replica_bytes'] / g['params']:.0f} bytes/parameter here) "
              "on every rank")
    (folder / "summary.json").write_text(json.dumps({"results": results, "gather_vs_copy": gathers}, indent=1))


if __name__ == "__main__":
    main()
