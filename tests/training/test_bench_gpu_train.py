"""``bench/gpu_train.py --tiny`` runs the GPU training benchmark's code path on CPU: rollout
speed, both LoRA step variants with their stage times and FLOP counts, and the memory
arithmetic, written to its JSON file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_train_bench_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "train.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train.py"), "--tiny", "--device", "cpu",
                    "--group", "4", "--replicates", "2", "--lora-rank", "4", "--out", str(out)],
                   capture_output=True, text=True, check=True, cwd=ROOT, timeout=600)
    result = json.loads(out.read_text())
    roll = result["rollout"]
    assert roll["batch"] == 4 and roll["tokens_per_s"] > 0 and roll["nfe"] == roll["steps"] == 8
    variants = [r["variant"] for r in result["lora_step"]]
    assert variants == ["LoRA r4, checkpointing on", "LoRA r4, checkpointing off"]
    for r in result["lora_step"]:
        assert "oom" not in r and r["loss_fwd_bwd_s"] > 0 and r["logp_s"] > 0
        assert r["loss_model_tflop"] > 0 and r["mfu"] is None  # no peak known for a CPU
    a, b = result["lora_step"]
    assert a["loss"] == b["loss"]  # both variants start from the same adapter and draw the same masks
    assert result["memory_8x80"]["params"] > 0 and result["env"]["device"] == "cpu"
