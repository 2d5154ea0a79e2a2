"""dmpo policies as an lm-evaluation-harness model (``lm_eval --model dmpo``).

* ``generate_until``: the prompt is completed by any registered sampler (``sampler=NAME``
  with its options), with ``gen_length``/``block_length``/``steps`` as in ``dmpo eval``
  (the checkpoint's recipe gives the defaults); the text is cut at the first stop string.
* ``loglikelihood``: a masked diffusion LM has no exact sequence likelihood; the
  continuation's log-likelihood is the ELBO estimate dmpo trains with
  (:mod:`dmpo_core.objective.estimators`: ``mc_samples`` masking replicates, antithetic,
  each masking ``m`` of the ``L`` continuation tokens and weighting by ``L/m``). It is a lower
  bound in expectation and noisy for few replicates; the seed makes it reproducible.
  ``is_greedy`` is our interpretation: every continuation token is the argmax at its
  position when the whole continuation is masked at once (one forward).
* ``loglikelihood_rolling`` is not offered (perplexity of a diffusion LM needs a different
  estimator); it raises.

lm_eval is imported only here (``pip install 'dllm-dmpo[lm-eval]'``).
"""

from __future__ import annotations

from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from dmpo_core.errors import InvalidArgumentError
from dmpo_core.objective.estimators import elbo_from_logp, masked_token_logp
from dmpo_core.objective.masks import sample_masks
from dmpo_core.training.build import load_policy, make_sampler
from dmpo_core.training.recipe import apply_recipe, read_recipe
from dmpo_core.training.rollout import decode_completions, encode_prompts


@register_model("dmpo")
class DmpoLM(LM):
    """An lm-eval model around a dmpo policy (``--model_args model=FOLDER,sampler=fast-dllm,...``)."""

    def __init__(self, model: str, backend: str | None = None, sampler: str | None = None,
                 gen_length: int | None = None, block_length: int | None = None, steps: int | None = None,
                 mc_samples: int = 8, batch_size: int = 8, seed: int = 0, policy: Any = None,
                 **sampler_options: Any) -> None:
        super().__init__()
        recipe = read_recipe(model)
        self.settings = apply_recipe(recipe, task=None, backend=backend, gen_length=gen_length,
                                     block_length=block_length, steps=steps, sampler=sampler,
                                     sampler_options=sampler_options)
        if mc_samples < 2 or mc_samples % 2:
            raise InvalidArgumentError("mc_samples", mc_samples, "use an even number >= 2 (antithetic pairs)")
        s = self.settings
        rollout = {"gen_length": s.gen_length, "block_length": s.block_length, "steps": s.steps, "temperature": 0.0}
        self.sampler = make_sampler(s.sampler, rollout, s.sampler_options, path="model_args")
        self.policy = policy if policy is not None else load_policy(s.backend, model, {"reference": False})
        self.policy.train(False)
        self.mc_samples = mc_samples
        self.batch = batch_size
        self.seed = seed

    # -- generation ------------------------------------------------------------------------

    @torch.no_grad()
    def generate_until(self, requests: list[Any]) -> list[str]:
        """Complete each ``(context, gen_kwargs)``; cut at the first of ``gen_kwargs['until']``."""
        out: list[str] = []
        tok, policy = self.policy.tokenizer, self.policy
        gen = torch.Generator().manual_seed(self.seed)
        for start in range(0, len(requests), self.batch):
            chunk = [r.args for r in requests[start:start + self.batch]]
            ids, mask = encode_prompts(tok, [c for c, _ in chunk], policy.pad_id)  # [N, P]
            done = self.sampler(policy.logits, ids.to(policy.device), mask.to(policy.device),
                                mask_id=policy.mask_id, generator=gen)
            for text, (_, kwargs) in zip(decode_completions(tok, done.completion_ids.cpu(), policy.stop_ids), chunk):
                until = kwargs.get("until") or []
                for stop in [until] if isinstance(until, str) else until:
                    text = text.split(stop)[0] if stop else text
                out.append(text)
        return out

    # -- likelihood ------------------------------------------------------------------------

    @torch.no_grad()
    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        """``(ELBO estimate of log p(continuation | context), is_greedy)`` of each request."""
        tok, policy = self.policy.tokenizer, self.policy
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        for context, continuation in (r.args for r in requests):
            ctx = torch.tensor([tok(context, add_special_tokens=False)["input_ids"]], dtype=torch.long)  # [1, P]
            cont = torch.tensor([tok(continuation, add_special_tokens=False)["input_ids"]], dtype=torch.long)  # [1, L]
            if cont.shape[1] == 0:
                out.append((0.0, True))
                continue
            ctx_mask = torch.ones_like(ctx, dtype=torch.bool)  # [1, P]
            eligible = torch.ones_like(cont, dtype=torch.bool)  # [1, L]
            masks = sample_masks(eligible, self.mc_samples, antithetic=True, clamp=True, generator=gen)  # [R, 1, L]
            logp = masked_token_logp(policy.logits, ctx, ctx_mask, cont, masks, policy.mask_id)  # [R, 1, L]
            elbo = float(elbo_from_logp(logp, masks, eligible)[0])
            all_masked = torch.cat([ctx, torch.full_like(cont, policy.mask_id)], dim=1)  # [1, P+L]
            logits = policy.logits(all_masked, torch.ones_like(all_masked), last=cont.shape[1])  # [1, L, V]
            out.append((elbo, bool((logits.argmax(-1).cpu() == cont).all())))
        return out

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        raise NotImplementedError("loglikelihood_rolling (perplexity) is not offered for diffusion LMs by dmpo")


__all__ = ["DmpoLM"]
