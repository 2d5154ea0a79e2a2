"""The public contract every dLLM backend plugin must pass.

A backend turns a checkpoint folder into a :class:`dmpo_core.contracts.Policy`. These
checks pin what the objective and the samplers rely on:

* ``logits_shape_and_dtype``: ``logits(ids [N, S], mask) -> [N, S, V]`` floating point,
  ``last=k`` gives the last k positions of the same logits;
* ``protocol``: the policy has every member of :class:`dmpo_core.contracts.Policy`;
* ``special_ids``: mask, eos and pad ids inside the vocabulary;
* ``bidirectional``: changing a later token changes an earlier position's logits;
* ``left_padding``: a left-padded batch gives each sequence's logits alone (real positions);
* ``eval_determinism``: two eval-mode forwards agree;
* ``gradient_flows``: a loss on the policy's logits gives finite gradients to
  ``trainable_parameters()``, and the reference logits carry no gradient;
* ``reference_unaffected_by_training_step``: one AdamW step moves the policy, not the reference;
* ``sync_reference``: after ``sync_reference()`` the reference equals the policy, and stays
  put when the policy moves on;
* ``save_load_round_trip``: ``save`` then loading the folder gives the same logits.

Use it in three lines, as a function::

    from dmpo_core.testing.backend_contract import run_backend_contract
    run_backend_contract(my_loader, "path/to/tiny-checkpoint")   # raises BackendContractError

or as a pytest mixin (one test per check)::

    class TestMyBackend(BackendContractTests):
        @pytest.fixture
        def contract_backend(self, tmp_path):
            return my_loader, write_my_tiny_checkpoint(tmp_path / "ckpt")

``load_fn(folder) -> Policy`` must give a fresh policy each call. This module imports only
torch and attrs, so a plugin's test suite needs nothing else from dmpo.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

LoadFn = Callable[[str], Any]
"""``load_fn(checkpoint_folder) -> Policy`` (a fresh policy on every call)."""


class BackendContractError(AssertionError):
    """A backend broke one contract check; the message names the check and what differed."""

    def __init__(self, check: str, problem: str) -> None:
        self.check = check
        self.problem = problem
        super().__init__(f"backend contract '{check}' failed: {problem}")


@attrs.frozen(kw_only=True)
class ContractSettings:
    """Sizes and tolerances of the checks (defaults suit a float32 tiny model on CPU)."""

    atol: float = 1e-5
    """Largest absolute logit difference counted as equal (raise it for bfloat16)."""
    changed: float = 1e-7
    """Smallest absolute logit difference counted as a change."""
    seq_len: int = attrs.field(default=12, validator=attrs.validators.ge(4))
    """Length S of the test sequences."""
    batch: int = attrs.field(default=2, validator=attrs.validators.ge(2))
    """Rows N of the test batches."""
    lr: float = 1e-2
    """AdamW learning rate of the training step (large enough to move a tiny model)."""
    seed: int = 0
    """Seed of the test inputs."""
    dtype: torch.dtype | None = None
    """Expected logits dtype (None: any floating dtype)."""


def _inputs(
    policy: Any, s: ContractSettings, *, n: int | None = None, seq: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = _vocab(policy)
    generator = torch.Generator().manual_seed(s.seed)
    ids = torch.randint(0, vocab, (n or s.batch, seq or s.seq_len), generator=generator)  # [N, S]
    return ids, torch.ones_like(ids)  # [N, S], [N, S]


def _vocab(policy: Any) -> int:
    probe = torch.zeros((1, 2), dtype=torch.long)
    with torch.no_grad():
        return int(policy.logits(probe, torch.ones_like(probe)).shape[-1])


def _eval_logits(policy: Any, ids: torch.Tensor, mask: torch.Tensor, **kw: Any) -> torch.Tensor:
    policy.train(False)
    with torch.no_grad():
        return policy.logits(ids, mask, **kw).float().cpu()  # [N, S, V]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def _close(check: str, what: str, a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    if a.shape != b.shape:
        raise BackendContractError(check, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    diff = _max_diff(a, b)
    if not diff <= atol:
        raise BackendContractError(check, f"{what}: max abs difference {diff:.3g} > atol {atol:g}")


def _training_step(policy: Any, s: ContractSettings) -> torch.Tensor:
    """One AdamW step on a cross-entropy loss of the policy's logits; returns the loss."""
    ids, mask = _inputs(policy, s)
    targets = torch.roll(ids, 1, dims=1)  # [N, S]: any fixed targets will do
    policy.train(True)
    params = list(policy.trainable_parameters())
    optimizer = torch.optim.AdamW(params, lr=s.lr)
    logits = policy.logits(ids, mask)  # [N, S, V]
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten().to(logits.device))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    policy.train(False)
    return loss.detach()


# ---------------------------------------------------------------------------------------
# The checks (each takes a FRESH policy)
# ---------------------------------------------------------------------------------------


def check_logits_shape_and_dtype(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """``[N, S, V]`` floating logits; ``last=k`` equals the last k positions of the full logits."""
    name = "logits_shape_and_dtype"
    ids, mask = _inputs(policy, s)
    full = policy.logits(ids, mask)  # [N, S, V]
    n, seq = ids.shape
    if full.dim() != 3 or tuple(full.shape[:2]) != (n, seq):
        raise BackendContractError(
            name, f"logits of ids {tuple(ids.shape)} have shape {tuple(full.shape)}, expected ({n}, {seq}, V)"
        )
    if not full.dtype.is_floating_point or (s.dtype is not None and full.dtype != s.dtype):
        raise BackendContractError(name, f"logits dtype {full.dtype}, expected {s.dtype or 'a floating dtype'}")
    for k in (1, 3, seq):
        part = policy.logits(ids, mask, last=k)  # [N, k, V]
        if tuple(part.shape) != (n, k, full.shape[-1]):
            raise BackendContractError(
                name, f"last={k} gave shape {tuple(part.shape)}, expected ({n}, {k}, {full.shape[-1]})"
            )
        _close(name, f"last={k} vs the last {k} full positions", part.detach(), full.detach()[:, -k:], s.atol)


def check_protocol(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """The policy has every member of :class:`dmpo_core.contracts.Policy`."""
    from dmpo_core.contracts import Policy  # torch and attrs only; imported late to keep this module light

    if not isinstance(policy, Policy):
        members = ("mask_id", "eos_id", "pad_id", "eot_id", "stop_ids", "tokenizer", "device", "logits", "reference_logits",
                   "trainable_parameters", "sync_reference", "train", "save")  # fmt: skip
        lacking = [m for m in members if not hasattr(policy, m)]
        raise BackendContractError("protocol", f"not a dmpo_core.contracts.Policy; lacks {', '.join(lacking)}")


def check_special_ids(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """mask, eos and pad ids are integers inside the vocabulary (end of turn too, when set), and
    ``stop_ids`` holds eos and end of turn."""
    vocab = _vocab(policy)
    for attr in ("mask_id", "eos_id", "pad_id", "eot_id"):
        value = getattr(policy, attr, None)
        if value is None and attr == "eot_id":
            continue
        if not isinstance(value, int) or not 0 <= value < vocab:
            raise BackendContractError("special_ids", f"{attr}={value!r} is not an id in [0, {vocab})")
    stops = getattr(policy, "stop_ids", None)
    if not isinstance(stops, tuple) or not all(isinstance(i, int) and 0 <= i < vocab for i in stops):
        raise BackendContractError("special_ids", f"stop_ids={stops!r} is not a tuple of ids in [0, {vocab})")
    missing = [f"{attr}={getattr(policy, attr)}" for attr in ("eos_id", "eot_id")
               if getattr(policy, attr, None) is not None and getattr(policy, attr) not in stops]
    if missing:
        raise BackendContractError("special_ids", f"stop_ids={stops!r} lacks {', '.join(missing)}")


def check_bidirectional(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """Changing the LAST token changes the logits at the first and middle positions."""
    ids, mask = _inputs(policy, s)
    other = ids.clone()
    other[:, -1] = (ids[:, -1] + 1) % _vocab(policy)
    a, b = _eval_logits(policy, ids, mask), _eval_logits(policy, other, mask)  # [N, S, V]
    for pos in (0, ids.shape[1] // 2):
        diff = _max_diff(a[:, pos], b[:, pos])
        if not diff > s.changed:
            raise BackendContractError(
                "bidirectional",
                f"changing the last token left position {pos}'s logits unchanged ({diff:.3g}): attention is causal",
            )


def check_left_padding(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """A left-padded batch gives, on the real positions, each sequence's logits alone."""
    seq = s.seq_len
    short = max(2, seq // 2)
    ids, _ = _inputs(policy, s, n=2)
    batch = ids.clone()  # [2, S]
    batch[0, : seq - short] = policy.pad_id
    mask = torch.ones_like(batch)  # [2, S]
    mask[0, : seq - short] = 0
    together = _eval_logits(policy, batch, mask)  # [2, S, V]
    alone_short = _eval_logits(
        policy, ids[:1, seq - short :], torch.ones((1, short), dtype=torch.long)
    )  # [1, short, V]
    alone_long = _eval_logits(policy, ids[1:], torch.ones((1, seq), dtype=torch.long))  # [1, S, V]
    _close("left_padding", "padded row vs alone", together[:1, seq - short :], alone_short, s.atol)
    _close("left_padding", "unpadded row vs alone", together[1:], alone_long, s.atol)
    last = _eval_logits(policy, batch, mask, last=2)  # [2, 2, V]
    _close("left_padding", "padded row with last=2 vs alone", last[:1], alone_short[:, -2:], s.atol)


def check_eval_determinism(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """Two eval-mode forwards of the same batch agree."""
    ids, mask = _inputs(policy, s)
    _close(
        "eval_determinism",
        "two eval forwards",
        _eval_logits(policy, ids, mask),
        _eval_logits(policy, ids, mask),
        s.atol,
    )


def check_gradient_flows(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """A loss on the logits reaches every trainable parameter (finite, not all zero); the
    reference logits carry no gradient."""
    name = "gradient_flows"
    params = list(policy.trainable_parameters())
    if not params:
        raise BackendContractError(name, "trainable_parameters() is empty")
    ids, mask = _inputs(policy, s)
    policy.train(True)
    logits = policy.logits(ids, mask)  # [N, S, V]
    if not logits.requires_grad:
        raise BackendContractError(name, "training-mode logits do not require grad")
    logits.float().logsumexp(-1).mean().backward()
    policy.train(False)
    missing = sum(p.grad is None for p in params)
    if missing:
        raise BackendContractError(name, f"{missing} of {len(params)} trainable parameters got no gradient")
    if not all(bool(torch.isfinite(p.grad).all()) for p in params):
        raise BackendContractError(name, "a gradient is not finite")
    if not any(bool(p.grad.abs().sum() > 0) for p in params):
        raise BackendContractError(name, "every gradient is zero")
    for p in params:
        p.grad = None
    ref = policy.reference_logits(ids, mask)  # [N, S, V]
    if ref.requires_grad:
        raise BackendContractError(name, "reference_logits requires grad")


def check_reference_unaffected_by_training_step(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """One AdamW step on ``trainable_parameters()`` changes the policy's logits, not the reference's."""
    name = "reference_unaffected_by_training_step"
    ids, mask = _inputs(policy, s)
    policy.train(False)
    ref_before = policy.reference_logits(ids, mask).float().cpu()  # [N, S, V]
    before = _eval_logits(policy, ids, mask)
    _training_step(policy, s)
    after = _eval_logits(policy, ids, mask)
    if not _max_diff(before, after) > s.changed:
        raise BackendContractError(name, "the training step did not change the policy's logits")
    _close(
        name, "reference before vs after the step", policy.reference_logits(ids, mask).float().cpu(), ref_before, s.atol
    )


def check_sync_reference(policy: Any, s: ContractSettings = ContractSettings()) -> None:
    """After a step and ``sync_reference()`` the reference equals the policy; a further step
    moves the policy but leaves the synced reference where it was."""
    name = "sync_reference"
    ids, mask = _inputs(policy, s)
    _training_step(policy, s)
    policy.sync_reference()
    synced = _eval_logits(policy, ids, mask)
    _close(name, "reference vs policy after sync", policy.reference_logits(ids, mask).float().cpu(), synced, s.atol)
    _training_step(policy, s)
    if not _max_diff(_eval_logits(policy, ids, mask), synced) > s.changed:
        raise BackendContractError(name, "the second training step did not change the policy")
    _close(name, "reference after a further step", policy.reference_logits(ids, mask).float().cpu(), synced, s.atol)


def check_save_load_round_trip(
    policy: Any, load_fn: LoadFn, tmp_dir: str | os.PathLike[str], s: ContractSettings = ContractSettings()
) -> None:
    """After a training step, ``save`` then ``load_fn`` gives the same policy (and the
    loaded policy's reference is the saved policy)."""
    name = "save_load_round_trip"
    _training_step(policy, s)
    ids, mask = _inputs(policy, s)
    expected = _eval_logits(policy, ids, mask)
    folder = Path(tmp_dir) / "contract-round-trip"
    policy.save(str(folder))
    loaded = load_fn(str(folder))
    _close(name, "logits after save and load", _eval_logits(loaded, ids, mask), expected, s.atol)
    _close(name, "reference of the loaded policy", loaded.reference_logits(ids, mask).float().cpu(), expected, s.atol)
    for attr in ("mask_id", "eos_id", "pad_id"):
        if getattr(loaded, attr) != getattr(policy, attr):
            raise BackendContractError(name, f"{attr} changed from {getattr(policy, attr)} to {getattr(loaded, attr)}")


POLICY_CHECKS: dict[str, Callable[[Any, ContractSettings], None]] = {
    "protocol": check_protocol,
    "logits_shape_and_dtype": check_logits_shape_and_dtype,
    "special_ids": check_special_ids,
    "bidirectional": check_bidirectional,
    "left_padding": check_left_padding,
    "eval_determinism": check_eval_determinism,
    "gradient_flows": check_gradient_flows,
    "reference_unaffected_by_training_step": check_reference_unaffected_by_training_step,
    "sync_reference": check_sync_reference,
}
"""Checks that need only a fresh policy, by name."""
CHECK_NAMES = (*POLICY_CHECKS, "save_load_round_trip")


def run_backend_contract(
    load_fn: LoadFn,
    checkpoint_dir: str | os.PathLike[str],
    *,
    settings: ContractSettings | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    only: tuple[str, ...] | None = None,
) -> list[str]:
    """Run every check (or those named in ``only``) on fresh policies from ``load_fn(checkpoint_dir)``.

    Returns the names of the checks run. Raises :class:`BackendContractError` at the
    first failure. ``tmp_dir`` receives the round-trip checkpoint (default: a temporary folder).
    """
    s = settings or ContractSettings()
    names = only or CHECK_NAMES
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown contract checks {unknown}; known: {', '.join(CHECK_NAMES)}")
    for check in names:
        policy = load_fn(str(checkpoint_dir))
        if check == "save_load_round_trip":
            if tmp_dir is None:
                with tempfile.TemporaryDirectory() as tmp:
                    check_save_load_round_trip(policy, load_fn, tmp, s)
            else:
                check_save_load_round_trip(policy, load_fn, tmp_dir, s)
        else:
            POLICY_CHECKS[check](policy, s)
    return list(names)


class BackendContractTests:
    """pytest mixin: one test per contract check.

    Subclass it and provide a fixture ``contract_backend`` returning
    ``(load_fn, checkpoint_dir)``; override ``contract_settings`` to change tolerances.
    """

    contract_settings = ContractSettings()

    def _policy(self, contract_backend: tuple[LoadFn, Any]) -> Any:
        load_fn, folder = contract_backend
        return load_fn(str(folder))

    def test_contract_logits_shape_and_dtype(self, contract_backend):
        check_logits_shape_and_dtype(self._policy(contract_backend), self.contract_settings)

    def test_contract_protocol(self, contract_backend):
        check_protocol(self._policy(contract_backend), self.contract_settings)

    def test_contract_special_ids(self, contract_backend):
        check_special_ids(self._policy(contract_backend), self.contract_settings)

    def test_contract_bidirectional(self, contract_backend):
        check_bidirectional(self._policy(contract_backend), self.contract_settings)

    def test_contract_left_padding(self, contract_backend):
        check_left_padding(self._policy(contract_backend), self.contract_settings)

    def test_contract_eval_determinism(self, contract_backend):
        check_eval_determinism(self._policy(contract_backend), self.contract_settings)

    def test_contract_gradient_flows(self, contract_backend):
        check_gradient_flows(self._policy(contract_backend), self.contract_settings)

    def test_contract_reference_unaffected_by_training_step(self, contract_backend):
        check_reference_unaffected_by_training_step(self._policy(contract_backend), self.contract_settings)

    def test_contract_sync_reference(self, contract_backend):
        check_sync_reference(self._policy(contract_backend), self.contract_settings)

    def test_contract_save_load_round_trip(self, contract_backend, tmp_path):
        load_fn, _ = contract_backend
        check_save_load_round_trip(self._policy(contract_backend), load_fn, tmp_path, self.contract_settings)


__all__ = [
    "CHECK_NAMES",
    "POLICY_CHECKS",
    "BackendContractError",
    "BackendContractTests",
    "ContractSettings",
    "check_bidirectional",
    "check_eval_determinism",
    "check_gradient_flows",
    "check_left_padding",
    "check_logits_shape_and_dtype",
    "check_reference_unaffected_by_training_step",
    "check_save_load_round_trip",
    "check_protocol",
    "check_special_ids",
    "check_sync_reference",
    "run_backend_contract",
]
