"""Build the ``builtin:countdown-tiny`` model (Countdown, 3 numbers) from the project's own data.

    python tools/make_countdown_tiny.py [--output DIR] [--seed 0] [--target 0.2]

Countdown with 3 numbers in the papers' answer format reduced to what a 0.8M-parameter
model can hold: the ``countdown`` task's ``compact`` prompt (``15,5,8>28:``), the whole
completion is the expression (``(15-8)*5``, then EOS), numbers 1-20, targets 1-40, at most
10 characters (generation length 12). The reward is the papers' (1 exact, 0.1 for a wrong
but present answer, 0 without one). Deterministically for a given seed:

1. writes a random-initialised LLaDA checkpoint in the ORIGINAL layout, the same size and
   tokenizer as ``sudoku-tiny`` (hidden 128, 4 layers, 4 heads, learned absolute positions);
2. trains it by masked-diffusion SFT (WDCE with uniform weights) on the task's generated
   TRAINING problems and their construction solutions;
3. stops early on purpose, at the first evaluation where the held-out accuracy (greedy
   low-confidence decoding, one token per step) reaches ``--target``, so RL has room (a weak
   base), and the model already writes well-formed expressions (RL-able: most groups hold a
   mix of 0.1 and 1.0 rewards);
4. saves it with the RL recipe (``dmpo_train.yaml``) and ``BUILD.json`` (how it was made and
   measured).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_builtin import ABSOLUTE_ROWS, ROPE_THETA, publish, sft_loss  # noqa: E402  (the sudoku builder's pieces)

from dmpo_core.samplers import LowConfidenceSampler  # noqa: E402
from dmpo_core.training.evaluate import evaluate  # noqa: E402
from dmpo_core.training.rollout import encode_prompts  # noqa: E402
from dmpo.backends import builtin  # noqa: E402

NAME = "countdown-tiny"
GEN_LENGTH = 12
"""Completion tokens: the longest construction solution (10 characters) plus EOS padding."""
EVAL_STEPS = 12
"""Greedy decoding steps of every held-out figure of the base (one token per step)."""
TASK_OPTIONS = {"prompt_style": "compact", "min_number": 1, "max_number": 20, "min_target": 1, "max_target": 40,
                "n_train": 5000, "n_test": 256}
"""The task the model is built for and trained on (the recipe passes the same options)."""

#: The RL recipe shipped with the model (``dmpo train --model builtin:countdown-tiny``): the
#: sudoku-tiny recipe's update on this task, rollouts of 2 tokens per forward.
RECIPE = {
    "backend": "llada",
    "model": f"builtin:{NAME}",
    "task": "countdown",
    "task_options": TASK_OPTIONS,
    "seed": 0,
    "total_steps": 1000,
    "max_minutes": 9.5,
    "eval_every": 50,
    "eval_size": 256,
    "eval_batch_size": 256,
    "save_every": 100,
    "rollout": {"prompts_per_step": 8, "group_size": 8, "gen_length": GEN_LENGTH, "block_length": GEN_LENGTH,
                "steps": 6, "temperature": 1.0},
    "eval_sampler_options": {"steps": EVAL_STEPS},
    "scoring": {"replicates": 2, "antithetic": True},
    "weighting": {"scheme": "dmpo-mean", "options": {"alpha": 0.04}},
    "loss": {"objective": "wdce", "options": {"replicates": 2, "antithetic": True, "clamp": True},
             "num_iterations": 1},
    "optim": {"lr": 2e-4, "grad_clip": 1.0, "weight_decay": 0.0, "warmup_steps": 0},
}


def target_ids(tok, solution: str, eos_id: int) -> list[int]:
    """The solution's tokens padded with EOS to :data:`GEN_LENGTH` (as an instruct model pads)."""
    ids = list(tok(solution, add_special_tokens=False)["input_ids"])[:GEN_LENGTH]
    return ids + [eos_id] * (GEN_LENGTH - len(ids))


def build(output: Path, *, seed: int, target: float, max_steps: int, lr: float, batch_size: int, eval_every: int,
          eval_size: int) -> dict:
    from dmpo.backends.llada import load_llada_policy
    from dmpo.backends.tiny import write_tiny_llada
    from dmpo.tasks.countdown import countdown

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    work = Path(tempfile.mkdtemp(prefix="dmpo-builtin-"))
    try:
        write_tiny_llada(work / "init", d_model=128, n_layers=4, n_heads=4, mlp_hidden_size=384, seed=seed, shards=1,
                         rope_theta=ROPE_THETA, rope=False, max_sequence_length=ABSOLUTE_ROWS)
        policy = load_llada_policy(str(work / "init"), reference=False)
        tok = policy.tokenizer
        task = countdown(**TASK_OPTIONS, seed=seed)
        train_items = list(task.train_items())
        test_items = list(task.test_items())[:eval_size]
        greedy = LowConfidenceSampler(gen_length=GEN_LENGTH, block_length=GEN_LENGTH, steps=EVAL_STEPS, temperature=0.0)
        params = list(policy.trainable_parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        history = []
        t0 = time.perf_counter()
        step = 0
        while step < max_steps:
            policy.train(True)
            idx = torch.randint(len(train_items), (batch_size,), generator=gen)
            batch = [train_items[int(i)] for i in idx]
            ids, mask = encode_prompts(tok, [task.prompt(it, tok) for it in batch], policy.pad_id)  # [N, P]
            tgt = torch.tensor([target_ids(tok, it["solution"], policy.eos_id) for it in batch])  # [N, L]
            blank = torch.zeros_like(tgt, dtype=torch.bool)  # [N, L]: every position weighted 1
            loss = sft_loss(policy, ids, mask, tgt, blank, 1.0, gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % eval_every == 0:
                metrics = evaluate(policy, task, greedy, test_items, batch_size=len(test_items), gen_length=GEN_LENGTH)[0]
                history.append({"step": step, "loss": float(loss.detach()), "accuracy": metrics["accuracy"]})
                print(f"step {step}: loss {float(loss.detach()):.4f} accuracy {metrics['accuracy']:.3f}", flush=True)
                if metrics["accuracy"] >= target:
                    break
        seconds = time.perf_counter() - t0
        staging = work / "out"
        policy.save(str(staging), format="original")
        (staging / "dmpo_train.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
        record = {"name": NAME, "seed": seed, "target": target, "lr": lr, "batch_size": batch_size,
                  "eval_every": eval_every, "eval_size": eval_size, "task_options": TASK_OPTIONS, "steps": step,
                  "seconds": round(seconds, 1), "history": history, "command": "python tools/make_countdown_tiny.py"}
        publish(staging, output, record)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=builtin.ROOT / NAME, help="where to write the model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.2, help="stop once held-out accuracy reaches this")
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=25, help="steps between the stopping checks")
    ap.add_argument("--eval-size", type=int, default=256)
    args = ap.parse_args(argv)
    record = build(args.output, seed=args.seed, target=args.target, max_steps=args.max_steps, lr=args.lr,
                   batch_size=args.batch_size, eval_every=args.eval_every, eval_size=args.eval_size)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}))


if __name__ == "__main__":
    main()
