"""Argument checks shared by the objective's functions.

Each check raises :class:`~dmpo_core.errors.InvalidArgumentError` (or ``ShapeError``)
naming the argument, its value and the fix, so bad input fails at the boundary with a
one-line message instead of deep inside a tensor operation.
"""

from __future__ import annotations

import math

import torch

from dmpo_core.errors import InvalidArgumentError, ShapeError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_group_size(group_size: int, n_rows: int) -> int:
    """Check that ``group_size`` divides the ``n_rows`` of a prompt-major ``[B*G]`` layout.

    Returns the number of groups ``B``.
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise InvalidArgumentError("group_size", group_size, "pass a positive int (completions per prompt)")
    if n_rows % group_size != 0:
        raise InvalidArgumentError(
            "group_size",
            group_size,
            f"it must divide the batch of {n_rows} rows (rows are prompt-major [B*G])",
        )
    return n_rows // group_size


def check_vector(name: str, tensor: object, n_rows: int | None = None, *, allow_nan: bool = False) -> torch.Tensor:
    """Check a 1-D floating tensor of ``n_rows`` entries; NaN allowed only where stated."""
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(name, type(tensor).__name__, "pass a 1-D torch.Tensor")
    if tensor.dim() != 1:
        raise ShapeError(name, tuple(tensor.shape), "pass a 1-D tensor of shape [B*G]")
    if n_rows is not None and tensor.shape[0] != n_rows:
        raise ShapeError(name, tuple(tensor.shape), f"expected shape ({n_rows},) to match the other inputs")
    if tensor.dtype not in FLOAT_DTYPES:
        raise ShapeError(name, tensor.dtype, "pass a floating tensor (float32, float64, bfloat16 or float16)")
    bad = torch.isinf(tensor) if allow_nan else ~torch.isfinite(tensor)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        what = "infinite" if allow_nan else "non-finite"
        raise InvalidArgumentError(
            name, float(tensor[index]), f"entry {index} is {what}; pass finite values (mark invalid rewards NaN)"
        )
    return tensor


def check_alpha(alpha: float) -> float:
    """Check the KL temperature ``alpha >= 0`` (0 drops the reference term)."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha < 0:
        raise InvalidArgumentError("alpha", alpha, "pass a finite alpha >= 0 (0 drops the reference term)")
    return float(alpha)


def check_coeff(coeff: float, name: str = "coeff") -> float:
    """Check a proximal coefficient in ``(0, 1]``."""
    if not isinstance(coeff, (int, float)) or isinstance(coeff, bool) or not (0.0 < coeff <= 1.0):
        raise InvalidArgumentError(name, coeff, "pass a proximal coefficient in (0, 1]; 1 is the full step")
    return float(coeff)


def check_replicates(replicates: int, antithetic: bool) -> int:
    """Check the number of masking replicates ``R`` (even when masks are antithetic)."""
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise InvalidArgumentError("replicates", replicates, "pass a positive int R")
    if antithetic and replicates % 2:
        raise InvalidArgumentError(
            "replicates", replicates, "antithetic masks come in pairs: pass an even R or antithetic=False"
        )
    return replicates


def check_same_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...], meaning: str) -> None:
    """Check that ``tensor`` has exactly ``shape`` (``meaning`` spells the letters, e.g. '[R, N, L]')."""
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(name, type(tensor).__name__, f"pass a torch.Tensor of shape {meaning}")
    if tuple(tensor.shape) != tuple(shape):
        raise ShapeError(name, tuple(tensor.shape), f"expected shape {tuple(shape)} {meaning}")
