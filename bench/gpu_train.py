"""One GPU, an LLaDA-8B-Instruct-shaped model: rollout speed, a DMPO step's time, memory and MFU.

    python bench/gpu_train.py [--out gpu-train.json] [--budget-s 420]
    python bench/gpu_train.py --tiny          # the same code path on a small model, CPU is fine

Random weights in bfloat16 with LLaDA-8B-Instruct's shape (hidden 4096, 32 layers, 32 heads,
MLP 12288, vocab 126464; about 8B parameters) on the stock ``LlamaForCausalLM(is_causal=False)``,
random prompts of 64 tokens. It measures, and writes to ``--out`` (JSON) and stdout:

(a) rollout tokens/s of the training sampler (low-confidence, gen 256, block 32, 128 steps =
    L/2, temperature 1), batch 16;
(b) one DMPO step at G = 16 (one prompt), R = 4, LoRA r 128 on the papers' modules, with and
    without gradient checkpointing: seconds of each stage (rollout, ELBO log-likelihoods of the
    current and the adapter-disabled reference policy, WDCE loss forward+backward, AdamW), peak
    GPU memory, and the MFU of the loss forward+backward;
(c) with ``--zero3``: the same step's loss forward+backward and optimizer step under the
    ``deepspeed`` engine with one rank, full fine-tuning, optimizer state offloaded to the CPU:
    peak GPU memory (it needs ``pip install 'dllm-dmpo[deepspeed]'``);

then the memory arithmetic of full 8B fine-tuning on 8 x 80 GB at G = 16, gen 256 from these
figures. A variant that runs out of memory is recorded as such, not retried smaller.

MFU: model FLOPs of the loss forward+backward over seconds times the GPU's dense bf16 peak
(``--peak-tflops``, default from the device name: H100/H200 989). The forward's FLOPs are
counted from the tokens that actually enter the model (a hook on the input embedding):
``2 * matmul parameters * tokens + 4 * layers * rows * S^2 * hidden`` (attention scores and
values, bidirectional). Backward counts ``1x`` forward with LoRA (activation gradients; the
frozen weights need no weight gradients) and ``2x`` for full fine-tuning; recomputation under
gradient checkpointing is not counted (MFU, not hardware FLOPs utilisation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import _sync, random_llada, random_prompts  # noqa: E402

LLADA_8B = {"hidden": 4096, "layers": 32, "heads": 32, "mlp": 12288, "vocab": 126464}
TINY = {"hidden": 64, "layers": 2, "heads": 4, "mlp": 192, "vocab": 512}
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16 tensor-core peaks


class TokenCounter:
    """Counts the forward FLOPs of every model call (hook on the input embedding)."""

    def __init__(self, model: torch.nn.Module, shape: dict[str, int]) -> None:
        emb = model.get_input_embeddings()
        self.matmul_params = sum(p.numel() for p in model.parameters()) - emb.weight.numel()
        self.shape = shape
        self.flops = 0.0
        self._hook = emb.register_forward_hook(self._count)

    def _count(self, _module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        rows, seq = inputs[0].shape  # [N, S]
        h, layers = self.shape["hidden"], self.shape["layers"]
        self.flops += 2.0 * self.matmul_params * rows * seq + 4.0 * layers * rows * seq * seq * h


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def lora_policy(shape: dict[str, int], device: torch.device, rank: int) -> Any:
    """The random policy with a LoRA adapter on the papers' LLaDA modules (reference: adapter off)."""
    import attrs
    from dmpo.backends.hf_policy import HFPolicy, LoraSettings
    from peft import LoraConfig, get_peft_model

    base = random_llada(shape["hidden"], shape["layers"], shape["heads"], shape["vocab"], device=device,
                        dtype=torch.bfloat16, mlp=shape["mlp"])
    settings = LoraSettings(r=rank, dropout=0.0)
    net = get_peft_model(base.model, LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=0.0,
                                                target_modules=list(settings.targets(base.family)), bias="none"))
    return HFPolicy(model=net, tokenizer=None, family=base.family, ids=base.ids,
                    options=attrs.evolve(base.options, lora=attrs.asdict(settings)), source=base.source,
                    reference_model=None, lora=settings)


def set_checkpointing(policy: Any, on: bool) -> None:
    base = policy.model.get_base_model() if hasattr(policy.model, "get_base_model") else policy.model
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def rollout_speed(policy: Any, *, batch: int, gen: int, block: int, prompt: int, device: torch.device) -> dict[str, Any]:
    """(a): seconds and tokens/s of one rollout batch; returns the completions too."""
    from dmpo_core.samplers import LowConfidenceSampler

    ids, mask = random_prompts(batch, prompt, policy.vocab_size, policy.mask_id, seed=0)
    ids, mask = ids.to(device), mask.to(device)
    sampler = LowConfidenceSampler(gen_length=gen, block_length=block, steps=gen // 2, temperature=1.0)
    with torch.no_grad():
        seconds, out = timed(device, lambda: sampler(policy.logits, ids, mask, mask_id=policy.mask_id,
                                                      generator=torch.Generator().manual_seed(0)))
    return {"batch": batch, "gen": gen, "block": block, "steps": gen // 2, "seconds": seconds,
            "tokens_per_s": batch * gen / seconds, "nfe": out.nfe,
            "completions": out.completion_ids, "prompt_ids": ids, "prompt_mask": mask}


def dmpo_step(policy: Any, roll: dict[str, Any], *, group: int, replicates: int, device: torch.device,
              shape: dict[str, int], full_finetune: bool, optimizer: Any, backward: Callable[[torch.Tensor], None],
              peak_tflops: float | None) -> dict[str, Any]:
    """(b)/(c): the ELBO log-likelihoods, weights, WDCE loss forward+backward and the optimizer step."""
    from dmpo_core.data import RolloutBatch
    from dmpo_core.objective.schemes import DmpoWeighting
    from dmpo_core.objective.wdce import WdceObjective
    from dmpo_core.training.rollout import estimate_log_likelihoods

    comp = roll["completions"]
    n = comp.shape[0]
    batch = RolloutBatch(prompt_ids=roll["prompt_ids"].cpu(), prompt_mask=roll["prompt_mask"].bool().cpu(),
                         completion_ids=comp.cpu(), eligible=torch.ones_like(comp, dtype=torch.bool).cpu(),
                         rewards=torch.rand(n, generator=torch.Generator().manual_seed(1)), group_size=group)
    out: dict[str, Any] = {}
    reset_peak(device)
    policy.train(False)
    out["logp_s"], (log_old, log_ref) = timed(device, lambda: estimate_log_likelihoods(
        policy, batch, replicates=replicates, antithetic=True, generator=torch.Generator().manual_seed(2)))
    weights = DmpoWeighting(alpha=0.04)(batch.rewards, log_ref - log_old, group)
    objective = WdceObjective(replicates=replicates)
    counter = TokenCounter(policy.model, shape)
    policy.train(True)

    def loss_fwd_bwd() -> float:
        loss, _ = objective(policy, batch, weights, num_groups=batch.num_groups,
                            generator=torch.Generator().manual_seed(3))
        backward(loss)
        return float(loss.detach())

    try:
        out["loss_fwd_bwd_s"], out["loss"] = timed(device, loss_fwd_bwd)
        out["optimizer_s"], _ = timed(device, optimizer)
    finally:
        counter._hook.remove()
        policy.train(False)
    model_flops = counter.flops * (3.0 if full_finetune else 2.0)
    out["loss_model_tflop"] = model_flops / 1e12
    out["loss_tflops_per_s"] = model_flops / out["loss_fwd_bwd_s"] / 1e12
    out["mfu"] = out["loss_tflops_per_s"] / peak_tflops if peak_tflops else None
    out["peak_gb"] = peak_memory_gb(device)
    return out


def lora_variant(policy: Any, roll: dict[str, Any], checkpointing: bool, args: Any, device: torch.device,
                 shape: dict[str, int], peak: float | None) -> dict[str, Any]:
    set_checkpointing(policy, checkpointing)
    params = [p for p in policy.trainable_parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]  # every variant starts from the same adapter
    opt = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.99), weight_decay=0.1)

    def step() -> None:
        torch.nn.utils.clip_grad_norm_(params, 0.2)
        opt.step()
        opt.zero_grad(set_to_none=True)

    record: dict[str, Any] = {"variant": f"LoRA r{args.lora_rank}, checkpointing {'on' if checkpointing else 'off'}"}
    try:
        record.update(dmpo_step(policy, roll, group=args.group, replicates=args.replicates, device=device,
                                shape=shape, full_finetune=False, optimizer=step, backward=lambda loss: loss.backward(),
                                peak_tflops=peak))
    except torch.OutOfMemoryError as err:
        record["oom"] = str(err).splitlines()[0]
        record["peak_gb"] = peak_memory_gb(device)
    finally:
        opt.zero_grad(set_to_none=True)
        del opt
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
        reset_peak(device)
    return record


def zero3_variant(shape: dict[str, int], roll: dict[str, Any], args: Any, device: torch.device,
                  peak: float | None) -> dict[str, Any]:
    """(c): one rank of the deepspeed engine, full fine-tuning, optimizer offloaded to the CPU."""
    import os

    from dmpo_core.registry import get_registry

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"}.items():
        os.environ.setdefault(key, value)
    record: dict[str, Any] = {"variant": "full fine-tuning, ZeRO-3 (1 rank), optimizer offloaded to CPU"}
    reset_peak(device)
    policy = random_llada(shape["hidden"], shape["layers"], shape["heads"], shape["vocab"], device=device,
                          dtype=torch.bfloat16, mlp=shape["mlp"], reference=True)
    set_checkpointing(policy, True)
    factory = get_registry().get("engine", "deepspeed").factory
    engine = factory(policy, lr=1e-6, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=0.2, warmup_steps=0,
                     schedule="constant", total_steps=1, offload_optimizer="cpu")
    try:
        record.update(dmpo_step(policy, roll, group=args.group, replicates=args.replicates, device=device,
                                shape=shape, full_finetune=True, optimizer=engine.step, backward=engine.backward,
                                peak_tflops=peak))
    except torch.OutOfMemoryError as err:
        record["oom"] = str(err).splitlines()[0]
        record["peak_gb"] = peak_memory_gb(device)
    return record


def memory_arithmetic(params: int, lora: list[dict[str, Any]], gpus: int = 8, gpu_gb: float = 80.0) -> dict[str, Any]:
    """Full fine-tuning of ``params`` parameters under ZeRO-3 on ``gpus`` GPUs, per GPU, in GB.

    Sharded: bf16 weights (2 bytes), bf16 gradients (2), fp32 master weights and AdamW's two
    moments (12), the bf16 reference copy (2): 18 bytes a parameter over ``gpus``. Not sharded:
    the activations of the loss forward+backward, taken from the one-GPU LoRA step with
    checkpointing (its peak minus the LoRA model's weights), and one layer's gathered weights.
    """
    gb = 2**30
    ckpt = next((r for r in lora if "on" in r["variant"] and r.get("peak_gb") and "oom" not in r), None)
    weights_gb = 2 * params / gb
    activations = (ckpt["peak_gb"] - weights_gb) if ckpt else None
    sharded = 18 * params / gb / gpus
    per_gpu = sharded + (activations or 0.0)
    return {"params": params, "gpus": gpus, "sharded_states_gb_per_gpu": sharded,
            "activations_gb_from_lora_step": activations, "per_gpu_gb": per_gpu if activations is not None else None,
            "fits": (per_gpu < gpu_gb) if activations is not None else None,
            "rule": "18 bytes/param sharded (bf16 weights 2, bf16 grads 2, fp32 master + 2 AdamW moments 12, "
                    "bf16 reference 2) / GPUs + activations of one GPU's loss step"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a small model and short lengths (a check of the script)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--group", type=int, default=16, help="G: rows of the step (one prompt)")
    ap.add_argument("--replicates", type=int, default=4, help="R of the ELBO and the loss")
    ap.add_argument("--lora-rank", type=int, default=128)
    ap.add_argument("--zero3", action="store_true", help="also (c): full fine-tuning under the deepspeed engine")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device")
    ap.add_argument("--out", default="gpu-train.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = TINY if args.tiny else LLADA_8B
    gen, block, prompt = (16, 8, 8) if args.tiny else (256, 32, 64)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()

    policy = lora_policy(shape, device, args.lora_rank)
    params = sum(p.numel() for n, p in policy.model.named_parameters() if "lora_" not in n)
    log(f"built: {params / 1e9:.2f}B parameters in {time.perf_counter() - t0:.0f} s")
    roll = rollout_speed(policy, batch=args.group, gen=gen, block=block, prompt=prompt, device=device)
    log(f"(a) rollout: {roll['tokens_per_s']:.1f} tokens/s")
    lora = []
    for checkpointing in (True, False):
        lora.append(lora_variant(policy, roll, checkpointing, args, device, shape, peak))
        log(f"(b) {lora[-1]['variant']}: {lora[-1]}")
    zero3 = None
    if args.zero3:
        del policy
        reset_peak(device)
        zero3 = zero3_variant(shape, roll, args, device, peak)
        log(f"(c) {zero3}")
    rollout_row = {k: v for k, v in roll.items() if not isinstance(v, torch.Tensor)}
    result = {
        "env": {"device": str(device), "gpu": gpu, "torch": torch.__version__, "shape": shape, "prompt": prompt,
                "peak_tflops": peak, "total_s": time.perf_counter() - t0},
        "rollout": rollout_row, "lora_step": lora, "zero3": zero3,
        "memory_8x80": memory_arithmetic(params, lora),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
