"""Evaluation: greedy (or sampled) completions of held-out items, scored by the task's metric."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from dmpo_core.contracts import Policy, Sampler, Task
from dmpo_core.training.rollout import decode_completions, encode_prompts, task_prefill


@torch.no_grad()
def evaluate(
    policy: Policy,
    task: Task,
    sampler: Sampler,
    items: Sequence[Mapping[str, Any]],
    *,
    batch_size: int,
    gen_length: int,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Complete every item once and score it.

    Returns:
        The task's metrics plus ``mean_nfe`` (forwards per item) and ``seconds``, and one
        audit record per item (prompt, completion, parsed answer, score).
    """
    policy.train(False)  # left in evaluation mode: the loop sets the mode of every stage itself
    tok = policy.tokenizer
    records: list[dict[str, Any]] = []
    outputs: list[str] = []
    nfe_total = 0
    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        texts = [task.prompt(item, tok) for item in chunk]
        ids, mask = encode_prompts(tok, texts, policy.pad_id)  # [N, P]
        prefill = task_prefill(task, chunk, tok, gen_length, policy.mask_id)  # [N, L] or None
        out = sampler(policy.logits, ids.to(policy.device), mask.to(policy.device), mask_id=policy.mask_id,
                      generator=generator, prefill=None if prefill is None else prefill.to(policy.device))
        nfe_total += out.nfe * len(chunk)
        decoded = decode_completions(tok, out.completion_ids.cpu(), policy.stop_ids)
        for text, completion, item in zip(texts, decoded, chunk):
            records.append({
                "prompt": text,
                "completion": completion,
                "answer": task.extract_answer(completion),
                "score": float(task.score(completion, item)),
                "item": {k: v for k, v in item.items() if isinstance(v, (str, int, float, bool, type(None)))},
            })
        outputs.extend(decoded)
        if progress:
            progress(len(chunk))
    metrics = dict(task.metric(outputs, list(items))) if items else {}
    metrics["mean_nfe"] = nfe_total / max(len(items), 1)
    metrics["seconds"] = time.perf_counter() - t0
    return metrics, records
