"""The compute precision of one stage of a step (``precision.*`` of the config).

A stage in ``bfloat16`` runs under ``torch.autocast`` on the policy's device type (``cpu`` or
``cuda``): autocast casts the inputs of matrix products to bf16 on the fly and keeps the
parameters, their gradients and the optimizer's state in their stored dtype (float32 master
weights). A stage in ``float32`` enters no context at all, so a run whose stages are all
float32 executes exactly the operations of a run without precision settings (the
single-process demo stays bit for bit).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from dmpo_core.errors import InvalidArgumentError
from dmpo_core.training.config import PRECISIONS

_AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16}


def stage_precision(name: str, device: torch.device | str) -> AbstractContextManager[object]:
    """The context a stage of precision ``name`` runs in on ``device``.

    ``float32``: a no-op context. ``bfloat16``: ``torch.autocast(device.type, torch.bfloat16)``.

    Raises:
        InvalidArgumentError: ``name`` is not one of :data:`PRECISIONS`.
    """
    if name not in PRECISIONS:
        raise InvalidArgumentError("precision", name, f"choose one of {', '.join(PRECISIONS)}")
    if name == "float32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=_AUTOCAST_DTYPES[name])
