"""``bench/gpu_samplers.py --tiny`` runs the GPU benchmark's code path on CPU and writes its table
(every configuration with tokens/s, NFE and a ratio; the baseline's ratio is 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_sampler_bench_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_samplers.py"), "--tiny", "--device", "cpu",
                    "--repeats", "1", "--batches", "1", "2", "--out", str(out),
                    "--only", "fast-dllm 0.9 cache=dual", "low-confidence cache=prefix"],
                   capture_output=True, text=True, check=True, cwd=ROOT, timeout=600)
    result = json.loads(out.read_text())
    rows = result["speed"]
    assert {(r["batch"], r["config"]) for r in rows} == {
        (b, c) for b in (1, 2) for c in ("low-confidence", "fast-dllm 0.9 cache=dual", "low-confidence cache=prefix")}
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["nfe"] >= 4  # at least one forward per block (32 / 8)
        if r["config"] == "low-confidence":
            assert r["ratio"] == 1.0 and r["nfe"] == 32
    assert result["env"]["dtype"] == "torch.bfloat16" and result["env"]["device"] == "cpu"
