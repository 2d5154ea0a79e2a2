"""The files ``dmpo new-plugin KIND NAME`` writes: one component module and one test per kind,
and the ``pyproject.toml`` and README every kind shares.

Placeholders: ``__NAME__`` (the registered name, ``my-sampler``), ``__DIST__`` (the
distribution, ``dmpo-my-sampler``), ``__MODULE__`` (its module, ``dmpo_my_sampler``),
``__CLASS__`` (a class-name prefix, ``MySampler``), ``__KIND__``, ``__HOOK__``
(``register_samplers``) and ``__DEPENDS__`` (dmpo's distribution name on the package index). Each generated test is the kind's contract suite from dmpo's pytest
plugin (the fixture ``dmpo_kit``), so it needs no import of dmpo.
"""

from __future__ import annotations

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=69", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "A __KIND__ plugin for dmpo: __NAME__"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["__DEPENDS__"]

[project.optional-dependencies]
test = ["pytest>=8", "hypothesis>=6.100"]

# dmpo loads every module of the entry-point group `dmpo` and calls its register_* hooks.
[project.entry-points.dmpo]
__NAME__ = "__MODULE__"

[tool.setuptools]
py-modules = ["__MODULE__"]
'''

README = '''\
# __DIST__

A __KIND__ plugin for dmpo: `__NAME__`, registered through the entry-point group `dmpo`
(see `pyproject.toml`) by the hook `__HOOK__` in `__MODULE__.py`.

```bash
pip install -e .              # then `dmpo plugins __NAME__` shows it and its options
pytest tests                  # the __KIND__ contract suite of dmpo's pytest plugin
```

The test is dmpo's contract suite for a __KIND__ (fixture `dmpo_kit`, from the pytest plugin
dmpo installs): keep it passing while you replace the example logic with yours. Every
option is a field of the attrs options class, with a docstring under it: `dmpo plugins
__NAME__` shows them, and dmpo checks users' values against the class before any model
loads. __EXTRA__
'''

README_EXTRA = {
    "backend": "A backend may ship the config its model is tuned with (`recommended_config=` in\n"
               "`register`); `dmpo train --backend __NAME__` layers it under the user's config and flags.",
    "task": "A task may ship the config it is tuned with (`recommended_config=` in `register`);\n"
            "`dmpo train --task __NAME__` layers it under the user's config and flags.",
    "command": "Run it as `dmpo __NAME__`.",
}

MODULES: dict[str, str] = {}
TESTS: dict[str, str] = {}

MODULES["backend"] = '''\
"""__DIST__: the dmpo backend ``__NAME__`` (``dmpo train --backend __NAME__ --model FOLDER``).

A backend turns a checkpoint folder into a policy that satisfies
``dmpo_core.contracts.Policy``: ``logits(ids [N, S], mask [N, S]) -> [N, S, V]`` of a
bidirectional (masked diffusion) model, the frozen reference's logits, the trainable
parameters, ``sync_reference``, ``train`` and ``save``. Replace :class:`__CLASS__Net` (a
one-layer byte-level model) and the folder format with your model's; keep the test passing.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import torch

from dmpo_core import hookimpl
from dmpo_core.errors import CheckpointError

MASK_ID, EOS_ID, PAD_ID, VOCAB = 256, 257, 258, 259  # bytes 0-255, then the special tokens
WEIGHTS = "weights.pt"


class ByteTokenizer:
    """UTF-8 bytes as tokens; what ``dmpo`` calls: ``tok(text, add_special_tokens=False)`` and ``decode``."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class __CLASS__Net(torch.nn.Module):
    """Byte and position embeddings, a context averaged over the sequence, a linear head."""

    def __init__(self, dim: int, positions: int = 512) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, dim)
        self.pos = torch.nn.Embedding(positions, dim)
        self.mix = torch.nn.Linear(2 * dim, dim)
        self.head = torch.nn.Linear(dim, VOCAB)

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        where = (attn.long().cumsum(1) - 1).clamp_min(0) % self.pos.num_embeddings  # [N, S]: left padding skipped
        h = self.emb(ids) + self.pos(where)  # [N, S, D]
        w = attn.float()[..., None]  # [N, S, 1]
        ctx = (h * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)  # [N, 1, D]
        return self.head(torch.tanh(self.mix(torch.cat([h, ctx.expand_as(h)], dim=-1))))  # [N, S, V]


class __CLASS__Policy:
    """The policy: the trained model and its frozen reference copy."""

    mask_id, eos_id, pad_id, eot_id = MASK_ID, EOS_ID, PAD_ID, None
    stop_ids = (EOS_ID,)  # eos ends a completion (add the end-of-turn id when the tokenizer has one)

    def __init__(self, net: __CLASS__Net) -> None:
        self.model = net
        self.ref = copy.deepcopy(net).requires_grad_(False)
        self.tokenizer = ByteTokenizer()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        out = self.model(input_ids, attention_mask)  # [N, S, V]
        return out[:, -last:] if last else out

    @torch.no_grad()
    def reference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                         last: int | None = None) -> torch.Tensor:
        out = self.ref(input_ids, attention_mask)  # [N, S, V]
        return out[:, -last:] if last else out

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(self.model.parameters())

    def sync_reference(self) -> None:
        self.ref.load_state_dict(self.model.state_dict())

    def train(self, mode: bool = True) -> __CLASS__Policy:
        self.model.train(mode)
        return self

    def save(self, path: str, *, format: str | None = None) -> None:
        """Write the folder :func:`load_policy` reads: config.json and the weights."""
        os.makedirs(path, exist_ok=True)
        torch.save(self.model.state_dict(), os.path.join(path, WEIGHTS))
        with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as fh:
            json.dump({"model_type": "__NAME__", "dim": self.model.emb.embedding_dim}, fh)


@attrs.frozen(kw_only=True)
class __CLASS__Options:
    """``backend_options`` of ``__NAME__``."""

    device: str = "cpu"
    """Where the model runs (``cpu``, ``cuda``, ``cuda:1`` ...)."""


def load_policy(model: str, *, device: str = "cpu") -> __CLASS__Policy:
    """The policy in the folder ``model`` (written by :meth:`__CLASS__Policy.save` or :func:`init_checkpoint`)."""
    config_path = os.path.join(model, "config.json")
    if not os.path.isfile(config_path) or not os.path.isfile(os.path.join(model, WEIGHTS)):
        raise CheckpointError(model, f"needs config.json and {WEIGHTS}; write one with init_checkpoint(folder)")
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    net = __CLASS__Net(dim=int(config["dim"]))
    net.load_state_dict(torch.load(os.path.join(model, WEIGHTS), map_location="cpu", weights_only=True))
    return __CLASS__Policy(net.to(device))


def init_checkpoint(folder: str, *, dim: int = 16, seed: int = 0) -> None:
    """Write a randomly initialised checkpoint to ``folder`` (a starting point, and the tests')."""
    torch.manual_seed(seed)
    __CLASS__Policy(__CLASS__Net(dim=dim)).save(folder)


#: The training config this backend's models are tuned with; ``dmpo train --backend __NAME__``
#: layers it under the user's config file and flags (the user's values win).
RECOMMENDED_CONFIG: dict[str, Any] = {"rollout": {"gen_length": 16, "block_length": 16, "steps": 8}}


def recommended_config(model: str) -> dict[str, Any]:
    """The recommended config for ``model`` (one for all of them here)."""
    return RECOMMENDED_CONFIG


@hookimpl
def register_backends(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", load_policy, options=__CLASS__Options, recommended_config=recommended_config,
             help="a byte-level one-layer model (a dmpo backend plugin)")
'''

TESTS["backend"] = '''\
"""The backend contract of dmpo (its pytest plugin's ``dmpo_kit``), one test per check."""

import pytest

import __MODULE__


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    __MODULE__.init_checkpoint(str(folder))
    return folder


def test_backend_contract(dmpo_kit, backend_check, checkpoint):
    dmpo_kit.check_backend(__MODULE__, "__NAME__", checkpoint, backend_check)


def test_trains_two_steps(dmpo_kit, checkpoint):
    last = dmpo_kit.train_two_steps(__MODULE__, {"backend": "__NAME__", "model": str(checkpoint)})
    assert last["moved"]


def test_recommended_config_is_a_config(dmpo_kit):
    from dmpo_core.training import TrainConfig

    recommended = dmpo_kit.entry(__MODULE__, "backend", "__NAME__").recommended("any-model")

    TrainConfig.from_dict(recommended, source="recommended config")
'''

MODULES["sampler"] = '''\
"""__DIST__: the dmpo sampler ``__NAME__`` (``--set rollout.sampler=__NAME__``, ``dmpo eval --sampler __NAME__``).

Left to right: each of ``steps`` model forwards predicts every masked position and commits
the leftmost ones (an even share of what is left), sampled at ``temperature`` (Gumbel-max in
float64; 0 is greedy). Replace the commit rule with yours; keep the test passing.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from dmpo_core import hookimpl
from dmpo_core.data import SampleOutput


@attrs.frozen(kw_only=True)
class __CLASS__Sampler:
    """Commit the leftmost masked positions, an even share per step."""

    gen_length: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    """``L``: completion length in tokens (dmpo passes ``rollout.gen_length``)."""
    block_length: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    """Semi-autoregressive block length (dmpo passes ``rollout.block_length``); decoding left
    to right finishes each block before the next, so it changes nothing here."""
    steps: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    """Model forwards for the whole completion (dmpo passes ``rollout.steps``)."""
    temperature: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Sampling temperature; 0 is greedy (evaluations pass 0)."""

    @property
    def returns_logp(self) -> bool:
        return False  # no exact per-token log-probs: dmpo estimates likelihoods by the ELBO

    def __call__(self, logits_fn: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, mask_id: int,
                 generator: torch.Generator | None = None, prefill: torch.Tensor | None = None) -> SampleOutput:
        n, length = prompt_ids.shape[0], self.gen_length
        x = (prefill.clone() if prefill is not None
             else torch.full((n, length), mask_id, dtype=torch.long, device=prompt_ids.device))  # [N, L]
        attn = torch.cat([prompt_mask, torch.ones_like(x, dtype=torch.bool)], dim=1)  # [N, P+L]
        nfe = 0
        for step in range(self.steps):
            masked = x == mask_id  # [N, L]
            if not bool(masked.any()):
                break
            share = (masked.sum(1) + self.steps - step - 1) // (self.steps - step)  # [N]: ceil(left / steps left)
            logits = logits_fn(torch.cat([prompt_ids, x], dim=1), attn, last=length).double()  # [N, L, V]
            nfe += 1
            logits[..., mask_id] = -torch.inf  # never predict the mask itself
            if self.temperature > 0:
                u = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
                logits = logits / self.temperature - torch.log(-torch.log(u.clamp_min(1e-300)))  # [N, L, V]
            tokens = logits.argmax(-1)  # [N, L]
            commit = masked & (masked.cumsum(1) <= share[:, None])  # [N, L]: the leftmost `share` masked
            x = torch.where(commit, tokens, x)
        return SampleOutput(completion_ids=x, nfe=nfe)


@hookimpl
def register_samplers(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Sampler, options=__CLASS__Sampler,
             help="left to right, an even share of the masked positions per step (a dmpo sampler plugin)")
'''

TESTS["sampler"] = '''\
"""The sampler contract of dmpo (its pytest plugin's ``dmpo_kit``), on a toy model."""

import __MODULE__


def test_sampler_contract(dmpo_kit):
    dmpo_kit.check_sampler(__MODULE__, "__NAME__")


def test_greedy_sampler_contract(dmpo_kit):
    dmpo_kit.check_sampler(__MODULE__, "__NAME__", temperature=0.0)
'''

MODULES["weighting"] = '''\
"""__DIST__: the dmpo weighting scheme ``__NAME__`` (``--set weighting.scheme=__NAME__``).

Advantages are the rewards centred on their group's mean, times ``scale``: a completion
better than its group's average is pushed up, a worse one down, and each group's
advantages sum to zero. Rows without a reward (NaN) get 0 and do not count in the mean.
Replace the rule with yours; the test runs every public law of ``dmpo_core.testing.laws``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from dmpo_core import hookimpl
from dmpo_core.data import WeightOutput


@attrs.frozen(kw_only=True)
class __CLASS__Weighting:
    """``advantage_j = scale * (r_j - mean of the group's valid rewards)``."""

    scale: float = attrs.field(default=1.0, validator=[attrs.validators.gt(0), attrs.validators.lt(1e6)])
    """Multiplier of the centred rewards, in (0, 1e6)."""

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()  # rewards only: no log-ratio or likelihood to compute

    @property
    def zero_sum(self) -> bool:
        return True  # advantages sum to zero within each group

    def __call__(self, rewards: torch.Tensor, log_rnd: torch.Tensor | None, group_size: int, *,
                 log_p_current: torch.Tensor | None = None, log_p_old: torch.Tensor | None = None) -> WeightOutput:
        r = rewards.double().view(-1, group_size)  # [B, G], float64: centring large rewards stays exact
        valid = torch.isfinite(r)  # [B, G]
        count = valid.sum(1, keepdim=True)  # [B, 1]
        mean = torch.where(valid, r, 0.0).sum(1, keepdim=True) / count.clamp_min(1)  # [B, 1]
        adv = torch.where(valid, self.scale * (r - mean), 0.0)  # [B, G]
        return WeightOutput(advantages=adv.float().reshape(-1), valid=valid.reshape(-1),
                            stats={"adv_abs_mean": float(adv.abs().mean()), "n_invalid": int((~valid).sum())})


@hookimpl
def register_weightings(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Weighting, options=__CLASS__Weighting,
             help="rewards centred on their group mean (a dmpo weighting plugin)")
'''

TESTS["weighting"] = '''\
"""Every public weighting law of dmpo (one test each; a law that does not apply is a skip)."""

import __MODULE__


def test_weighting_law(dmpo_kit, weighting_law):
    dmpo_kit.check_weighting_law(weighting_law, __MODULE__, "__NAME__")


def test_trains_two_steps(dmpo_kit):
    dmpo_kit.check_weighting(__MODULE__, "__NAME__")
'''

MODULES["objective"] = '''\
"""__DIST__: the dmpo objective ``__NAME__`` (``--set loss.objective=__NAME__``).

A mean-field policy gradient: with the whole completion masked, one forward gives every
token's log-probability; the loss is ``-sum_j a_j * mean_i log p(x_j^i)`` over the rows of
the batch, divided by the number of rows. Replace it with yours; keep the test passing.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from dmpo_core import hookimpl


@attrs.frozen(kw_only=True)
class __CLASS__Objective:
    """``-(1/N) sum_j a_j * mean_i log p_theta(x_j^i | prompt, all masked)``."""

    scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    """Multiplier of the loss (> 0)."""

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()  # nothing beyond the advantages

    def prepare(self, policy: Any, batch: Any, *, num_iterations: int, generator: torch.Generator) -> dict:
        return {}  # no rollout-time data

    def __call__(self, policy: Any, batch: Any, weights: Any, *, num_groups: int, iteration: int = 0,
                 weighting: Any = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        masked = torch.full_like(batch.completion_ids, policy.mask_id)  # [N, L]
        ids = torch.cat([batch.prompt_ids, masked], dim=1)  # [N, P+L]
        attn = torch.cat([batch.prompt_mask, torch.ones_like(masked, dtype=torch.bool)], dim=1)  # [N, P+L]
        logits = policy.logits(ids, attn, last=masked.shape[1]).float()  # [N, L, V]
        logp = torch.log_softmax(logits, -1).gather(-1, batch.completion_ids[..., None])[..., 0]  # [N, L]
        per_row = (logp * batch.eligible).sum(1) / batch.eligible.sum(1).clamp_min(1)  # [N]
        adv = weights.advantages.to(per_row)  # [N]
        loss = -self.scale * (adv * per_row).sum() / (num_groups * batch.group_size)
        return loss, {"loss": float(loss.detach()), "__NAME__/logp_mean": float(per_row.detach().mean())}


@hookimpl
def register_objectives(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Objective, options=__CLASS__Objective,
             help="mean-field policy gradient on the advantages (a dmpo objective plugin)")
'''

TESTS["objective"] = '''\
"""The objective contract of dmpo (its pytest plugin's ``dmpo_kit``): two steps on a toy model."""

import __MODULE__


def test_objective_contract(dmpo_kit):
    dmpo_kit.check_objective(__MODULE__, "__NAME__")
'''

MODULES["engine"] = '''\
"""__DIST__: the dmpo engine ``__NAME__`` (``--set engine=__NAME__``).

An engine owns the optimizer: ``backward(loss)``, ``step() -> gradient norm`` (a non-finite
norm skips the update), ``zero_grad``, its state for checkpoints, and where the run lives
(device, rank, world size). This one is plain SGD in one process; replace it with yours.
``SingleProcess`` gives the world-size-1 answers of the rank members (shard, gathers, whole
parameters for generation, the engine's own checkpoint files); a multi-rank engine writes
its own (see docs/distributed.md and dmpo's ``deepspeed`` engine).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch

from dmpo_core import hookimpl
from dmpo_core.engine_base import SingleProcess


@attrs.frozen(kw_only=True)
class __CLASS__Options:
    """``engine_options`` of ``__NAME__``."""

    momentum: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    """SGD momentum, in [0, 1)."""


class __CLASS__Engine(SingleProcess):
    """SGD with gradient-norm clipping, one process."""

    def __init__(self, policy: Any, *, lr: float, grad_clip: float, momentum: float = 0.0, **_optim: Any) -> None:
        self.params = list(policy.trainable_parameters())
        self.opt = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        self.grad_clip = grad_clip
        self._device = policy.device

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip or math.inf))
        if math.isfinite(norm):
            self.opt.step()
        self.zero_grad()
        return norm

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: Any) -> None:
        self.opt.load_state_dict(state["opt"])


@hookimpl
def register_engines(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Engine, options=__CLASS__Options, help="plain SGD, one process (a dmpo engine plugin)")
'''

TESTS["engine"] = '''\
"""The engine contract of dmpo (its pytest plugin's ``dmpo_kit``): two steps on a toy model."""

import __MODULE__


def test_engine_contract(dmpo_kit):
    dmpo_kit.check_engine(__MODULE__, "__NAME__")


def test_engine_with_momentum(dmpo_kit):
    dmpo_kit.check_engine(__MODULE__, "__NAME__", momentum=0.5)
'''

MODULES["task"] = '''\
"""__DIST__: the dmpo task ``__NAME__`` (``dmpo train --task __NAME__``).

Reverse a word of four letters: the prompt is ``"reverse: abcd ="``, the answer ``dcba``.
The reward and the metric are the fraction of letters in place. Replace the data, prompt and
scoring with yours; keep the test passing.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dmpo_core import hookimpl
from dmpo_core.rewards import RewardComponent


def letters_in_place(completion: str, answer: str) -> float:
    """Fraction of ``answer``'s letters that ``completion`` has in place: ``("dcxa", "dcba") -> 0.75``."""
    return sum(a == b for a, b in zip(completion.strip(), answer)) / len(answer)


@attrs.frozen(kw_only=True)
class __CLASS__Task:
    """Reverse four letters."""

    train_size: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    """Training items."""
    test_size: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    """Held-out items (never among the training items)."""
    seed: int = 0
    """Seed of the data."""

    name = "__NAME__"

    def _items(self) -> list[dict[str, str]]:
        rng = random.Random(self.seed)
        words: list[str] = []
        while len(words) < self.train_size + self.test_size:
            word = "".join(rng.choice("abcdefgh") for _ in range(4))
            if word not in words:
                words.append(word)
        return [{"word": w, "answer": w[::-1]} for w in words]

    def train_items(self) -> Sequence[Mapping[str, Any]]:
        return self._items()[: self.train_size]

    def test_items(self) -> Sequence[Mapping[str, Any]]:
        return self._items()[self.train_size:]

    def prompt(self, item: Mapping[str, Any], tokenizer: Any) -> str:
        return f"reverse: {item['word']} ="

    def _correct(self, prompts: Sequence[str], completions: Sequence[str],
                 items: Sequence[Mapping[str, Any]]) -> list[float | None]:
        return [letters_in_place(c, it["answer"]) for c, it in zip(completions, items)]

    def reward_components(self) -> Sequence[Any]:
        return [RewardComponent(name="correct", weight=1.0, fn=self._correct)]

    def extract_answer(self, completion: str) -> str | None:
        return completion.strip() or None

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        return letters_in_place(completion, item["answer"])

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return float(completion.strip() == item["answer"])

    def completion_prefill(self, item: Mapping[str, Any], tokenizer: Any, gen_length: int,
                           mask_id: int) -> Sequence[int] | None:
        return None  # decode every position

    def relevant_positions(self, item: Mapping[str, Any], length: int) -> Sequence[bool] | None:
        return None  # the reward may read any position

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        scores = [self.score(c, it) for c, it in zip(completions, items)]
        return {"accuracy": sum(scores) / max(len(scores), 1)}


#: The training config this task is tuned with; ``dmpo train --task __NAME__`` layers it under
#: the user's config file and flags (the user's values win).
RECOMMENDED_CONFIG: dict[str, Any] = {"rollout": {"gen_length": 8, "block_length": 8, "steps": 4}}


@hookimpl
def register_tasks(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Task, options=__CLASS__Task, recommended_config=RECOMMENDED_CONFIG,
             help="reverse four letters (a dmpo task plugin)")
'''

TESTS["task"] = '''\
"""The task contract of dmpo (its pytest plugin's ``dmpo_kit``): items, prompts, rewards,
metric, and two training steps on a toy model."""

import __MODULE__


def test_task_contract(dmpo_kit):
    dmpo_kit.check_task(__MODULE__, "__NAME__")


def test_scores_by_hand():
    # "dcxa" against "dcba": d, c and a in place, x not -> 3/4.
    assert __MODULE__.letters_in_place("dcxa", "dcba") == 0.75
'''

MODULES["reward"] = '''\
"""__DIST__: the dmpo reward component ``__NAME__``.

Penalises completions longer than ``max_chars`` characters: 0 up to it, then ``-penalty``
per extra character (at most -1). Replace the rule with yours; keep the test passing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dmpo_core import hookimpl


@attrs.frozen(kw_only=True)
class __CLASS__Reward:
    """``-min(1, penalty * max(0, len(completion) - max_chars))``."""

    max_chars: int = attrs.field(default=200, validator=attrs.validators.ge(0))
    """Length allowed without a penalty, in characters."""
    penalty: float = attrs.field(default=0.01, validator=attrs.validators.ge(0))
    """Reward lost per character beyond ``max_chars``."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str],
                 items: Sequence[Mapping[str, Any]]) -> list[float | None]:
        return [-min(1.0, self.penalty * max(0, len(c) - self.max_chars)) for c in completions]


@hookimpl
def register_rewards(register: Any) -> None:
    """Register ``__NAME__``."""
    register("__NAME__", __CLASS__Reward, options=__CLASS__Reward,
             help="a penalty on long completions (a dmpo reward plugin)")
'''

TESTS["reward"] = '''\
"""The reward contract of dmpo (its pytest plugin's ``dmpo_kit``)."""

import __MODULE__


def test_reward_contract(dmpo_kit):
    dmpo_kit.check_reward(__MODULE__, "__NAME__")


def test_penalty_by_hand():
    # max 2 characters, 0.25 per extra: "ab" -> 0, "abcd" -> -0.5, 10 characters -> -1 (capped).
    reward = __MODULE__.__CLASS__Reward(max_chars=2, penalty=0.25)
    assert reward(["", "", ""], ["ab", "abcd", "x" * 10], [{}, {}, {}]) == [0.0, -0.5, -1.0]
'''

MODULES["command"] = '''\
"""__DIST__: the dmpo command ``dmpo __NAME__``.

Lists the registered components of one kind. Replace it with yours; keep the test passing.
"""

from __future__ import annotations

from typing import Any

import click

from dmpo_core import hookimpl


@click.command()
@click.option("--kind", default="sampler", show_default=True, help="Which kind of component to count.")
def __MODULE__(kind: str) -> None:
    """Count the registered components of one kind."""
    from dmpo_core.registry import get_registry

    names = get_registry().names(kind)
    click.echo(f"{len(names)} {kind}(s): {', '.join(names)}")


@hookimpl
def register_commands(register: Any) -> None:
    """Register ``dmpo __NAME__``."""
    register("__NAME__", lambda: __MODULE__, help="count the registered components of one kind")
'''

TESTS["command"] = '''\
"""The command contract of dmpo (its pytest plugin's ``dmpo_kit``)."""

from click.testing import CliRunner

import __MODULE__


def test_command_contract(dmpo_kit):
    dmpo_kit.check_command(__MODULE__, "__NAME__")


def test_counts_samplers():
    result = CliRunner().invoke(__MODULE__.__MODULE__, ["--kind", "sampler"])
    assert result.exit_code == 0 and "low-confidence" in result.output
'''

KINDS: tuple[str, ...] = tuple(MODULES)
"""Kinds ``dmpo new-plugin`` writes a skeleton for (one per hook)."""
