"""Tokens/s of every sampler and cache mode on an LLaDA-8B-Instruct-shaped model (one GPU).

    python bench/gpu_samplers.py [--out gpu-samplers.json] [--repeats 2] [--budget-s 270]
    python bench/gpu_samplers.py --tiny            # the same code path on a small model, CPU is fine

Random weights in bfloat16 with LLaDA-8B-Instruct's shape (hidden 4096, 32 layers, 32 heads,
MLP 12288, vocab 126464; about 8B parameters, 16 GB), built in memory on the stock
``LlamaForCausalLM(is_causal=False)``; random prompts of 64 tokens, completion 256 in blocks
of 32, batch 1 and 16. The configurations are those of ``bench/samplers.py`` (interleaved,
shuffled per repeat, ratios to vanilla low-confidence of the same repeat). It stops adding
repeats when ``--budget-s`` would be exceeded (the whole run is meant to fit in 5 minutes on
one H200) and writes both the table and the environment (GPU name, torch version) to
``--out``. A random model is not confident: threshold samplers commit about one token per step
on it, so the NFE column is not a trained model's; the cache modes' saving per forward is what
it measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import BASELINE, print_speed, random_llada, speed_table  # noqa: E402

LLADA_8B = {"hidden": 4096, "layers": 32, "heads": 32, "mlp": 12288, "vocab": 126464}
TINY = {"hidden": 64, "layers": 2, "heads": 4, "mlp": 192, "vocab": 512}
DEFAULT_ONLY = [
    "low-confidence steps=L/2",
    "low-confidence cache=prefix", "low-confidence cache=dual", "low-confidence steps=L/2 cache=dual",
    "fast-dllm 0.9 cache=none", "fast-dllm 0.9 cache=prefix", "fast-dllm 0.9 cache=dual",
    "eb 0.1 cache=none", "eb 0.1 cache=dual",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a small model and short lengths (a check of the script)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=270.0, help="stop before a repeat that would pass this")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--only", nargs="*", default=DEFAULT_ONLY, help="configurations (the baseline always runs)")
    ap.add_argument("--out", default="gpu-samplers.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = TINY if args.tiny else LLADA_8B
    gen, block, prompt = (32, 8, 8) if args.tiny else (256, 32, 64)
    dtype = torch.bfloat16
    t0 = time.perf_counter()
    policy = random_llada(shape["hidden"], shape["layers"], shape["heads"], shape["vocab"], device=device,
                          dtype=dtype, mlp=shape["mlp"])
    build_s = time.perf_counter() - t0
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    for batch in args.batches:
        spent = time.perf_counter() - t0
        if rows and spent > args.budget_s:
            log(f"budget: skipping batch {batch} after {spent:.0f} s")
            break
        rows += speed_table(policy.logits, vocab=shape["vocab"], mask_id=policy.mask_id, device=device,
                            batches=[batch], gen=gen, block=block, prompt=prompt, repeats=args.repeats,
                            only=args.only, log=log)
    env = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "torch": torch.__version__, "dtype": str(dtype), "shape": shape, "gen": gen, "block": block,
           "prompt": prompt, "repeats": args.repeats, "build_s": build_s, "total_s": time.perf_counter() - t0,
           "baseline": BASELINE}
    Path(args.out).write_text(json.dumps({"env": env, "speed": rows}, indent=1))
    print(f"{'tiny' if args.tiny else 'LLaDA-8B-shaped'} random model, bf16, {device}, gen {gen}, block {block}, "
          f"prompt {prompt}; {env['total_s']:.0f} s in all")
    print_speed(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
