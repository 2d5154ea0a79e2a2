"""Evaluation protocols: the published papers' decoding settings as named presets, and the
record of everything an evaluation number depends on.

Published numbers on the same tasks disagree partly because the papers decode differently
(docs/protocols.md): d1 evaluates with ``steps = gen_length / 2``, block 32, greedy; the
DMPO code with ``steps = gen_length``. A preset names one such setting; an option given
explicitly always wins over the preset. :func:`evaluation_protocol` writes down what an
evaluation actually ran (sampler and every option, lengths, prompt style, metric names and
versions, the evaluated items' count and fingerprint, the seed), so that two numbers can
be compared, or a difference explained, from their records alone.

Torch-free: the command line resolves a preset before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from dmpo_core.errors import ConfigError

#: Version of the protocol record's layout (raise it when a key changes meaning).
RECORD_VERSION = 1


def _half(gen_length: int) -> int:
    return max(1, gen_length // 2)


def _full(gen_length: int) -> int:
    return gen_length


@attrs.frozen(kw_only=True)
class Preset:
    """A named evaluation protocol: how the completion is decoded."""

    name: str
    """Name given to ``--protocol``."""
    summary: str
    """One line: the settings and whose they are."""
    steps: Callable[[int], int]
    """Denoising steps as a function of the generation length."""
    steps_rule: str
    """The rule of :attr:`steps` in words, as recorded (``gen_length/2``)."""
    block_length: int | None
    """Semi-autoregressive block length; None: the model's recommended one, else 32."""
    temperature: float = 0.0
    """Sampling temperature (0: greedy)."""
    sampler: str = "low-confidence"
    """Registered sampler the protocol decodes with."""
    remasking: str = "low_confidence"
    """The low-confidence sampler's remasking rule."""


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(name="default", summary="our default: the model's recommended lengths (else block 32), "
                                       "steps gen_length/2, greedy, low-confidence remasking",
               steps=_half, steps_rule="gen_length/2", block_length=None),
        Preset(name="d1", summary="d1 (diffu-GRPO) and the papers that reuse its evaluation: steps gen_length/2, "
                                  "block 32, greedy, low-confidence remasking",
               steps=_half, steps_rule="gen_length/2", block_length=32),
        Preset(name="dmpo", summary="the DMPO code's evaluation: steps gen_length (one token per step), "
                                    "block 32, greedy, low-confidence remasking",
               steps=_full, steps_rule="gen_length", block_length=32),
    )
}
"""The presets of ``dmpo eval --protocol``; ``default`` is what runs without ``--protocol``."""

DEFAULT_BLOCK_LENGTH = 32
"""Block length of the ``default`` preset for a model that recommends none."""


@attrs.frozen(kw_only=True)
class Decoding:
    """The decoding settings an evaluation runs with, after a preset and the explicit options."""

    preset: str
    sampler: str
    gen_length: int
    block_length: int
    steps: int
    temperature: float
    remasking: str | None
    """The low-confidence sampler's remasking rule (None: the sampler has no such option)."""
    explicit: tuple[str, ...]
    """Settings given explicitly, which won over the preset."""


def preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: no such preset (the message lists them).
    """
    if name not in PRESETS:
        raise ConfigError([f"--protocol={name!r}: choose one of {', '.join(PRESETS)}"], source="evaluation protocol")
    return PRESETS[name]


def resolve_decoding(
    name: str,
    *,
    gen_length: int,
    block_length: int | None = None,
    steps: int | None = None,
    temperature: float | None = None,
    sampler: str | None = None,
    remasking: str | None = None,
    recommended_block_length: int | None = None,
) -> Decoding:
    """The decoding settings of preset ``name`` with every explicitly given option winning.

    Args:
        name: a key of :data:`PRESETS`.
        gen_length: the completion length (from ``--gen-length`` or the model's recommendation).
        block_length, steps, temperature, sampler, remasking: explicit options (None: not given).
        recommended_block_length: the model's recommended block length (``default`` uses it).
    """
    p = preset(name)
    given = {"block_length": block_length, "steps": steps, "temperature": temperature, "sampler": sampler,
             "remasking": remasking}
    explicit = tuple(k for k, v in given.items() if v is not None)
    if block_length is None:
        block_length = p.block_length
        if block_length is None:
            block_length = min(recommended_block_length or DEFAULT_BLOCK_LENGTH, gen_length)
    sampler = sampler if sampler is not None else p.sampler
    if remasking is None and sampler == p.sampler:
        remasking = p.remasking
    return Decoding(
        preset=p.name, sampler=sampler, gen_length=gen_length, block_length=block_length,
        steps=steps if steps is not None else p.steps(gen_length),
        temperature=float(temperature) if temperature is not None else p.temperature,
        remasking=remasking, explicit=explicit,
    )


def items_fingerprint(items: Sequence[Mapping[str, Any]]) -> str:
    """A short SHA-256 of the evaluated items (their JSON, keys sorted, in order): two
    evaluations on the same fingerprint scored exactly the same problems."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def sampler_options(sampler: Any) -> dict[str, Any]:
    """Every option of a sampler that is an attrs class (its resolved values), else ``{}``."""
    if not attrs.has(type(sampler)):
        return {}
    return {k: _plain(v) for k, v in attrs.asdict(sampler, recurse=False).items()}


def task_facts(task: Any) -> dict[str, Any]:
    """What a task says about its protocol (prompt style, template, metrics with versions,
    data source) through its optional ``protocol_facts()``; ``{}`` for a task without one.

    ``protocol_facts`` is optional in the task contract: an evaluation of a task that does
    not describe itself still records the decoding, the items' count and fingerprint.
    """
    describe = getattr(task, "protocol_facts", None)
    if describe is None:
        return {}
    return {k: _plain(v) for k, v in dict(describe()).items()}


def evaluation_protocol(
    *,
    task_name: str,
    task: Any,
    sampler_name: str,
    sampler: Any,
    gen_length: int,
    items: Sequence[Mapping[str, Any]],
    seed: int,
    batch_size: int,
    preset: str | None = None,
    explicit: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full protocol of one evaluation, as a JSON-ready mapping (docs/protocols.md lists the keys).

    Args:
        task_name, task: the registered task name and the task object.
        sampler_name, sampler: the registered sampler name and the sampler object (its options
            are read from it, so what is recorded is what ran).
        gen_length: the completion length.
        items: the evaluated items (count and fingerprint are recorded).
        seed: the seed of sampling (and of the subsample, for ``dmpo eval --limit``).
        batch_size: prompts per sampler call (some samplers' results depend on it).
        preset: the preset name (None: the training loop's evaluation, which has none).
        explicit: options given explicitly over the preset.
        extra: further keys (``limit``, the model), recorded as given.
    """
    options = sampler_options(sampler)
    facts = task_facts(task)
    dataset = dict(facts.pop("dataset", {}) or {})
    dataset.update({"size": len(items), "fingerprint": items_fingerprint(items)})
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "preset": preset,
        "explicit": list(explicit),
        "sampler": {"name": sampler_name, "options": options},
        "gen_length": int(options.get("gen_length", gen_length)),
        "block_length": options.get("block_length"),
        "steps": options.get("steps"),
        "temperature": options.get("temperature"),
        "task": task_name,
        **facts,
        "dataset": dataset,
        "seed": seed,
        "batch_size": batch_size,
    }
    if extra:
        record.update({k: _plain(v) for k, v in extra.items()})
    return record


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (tuples become lists; anything else unknown becomes its repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)
