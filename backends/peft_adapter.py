"""LoRA adapters on disk in peft's own format: write one, recognise one, load one onto a base.

A LoRA run's checkpoint holds ``adapter/`` (``adapter_config.json`` and
``adapter_model.safetensors``), written by peft's ``save_pretrained``, so that a user
reloads it without dmpo::

    base = LlamaForCausalLM.from_pretrained("base-hf")      # the base in the hf layout
    model = PeftModel.from_pretrained(base, "run/checkpoints/step-000100/adapter")

The module names inside the adapter are the transformers names of the stock model class
(``model.layers.N.self_attn.q_proj``), so the base must be in the ``hf`` layout for a
stock load (``dmpo export BASE --format hf``); dmpo itself loads an adapter onto a base
in either layout (backend option ``adapter``, ``dmpo eval --adapter``).

The functions take the peft model and a folder, and nothing of the training engine, so
every engine (one process, DeepSpeed) writes the same adapter. peft is imported only here
and only when called.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from dmpo.backends.hf_checkpoint import atomic_folder

from dmpo_core.errors import CheckpointError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_adapter_folder(path: str | Path) -> bool:
    """True for a folder holding a peft adapter and no full model (``adapter_config.json``, no ``config.json``)."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` of an adapter folder.

    Raises:
        CheckpointError: missing, garbled, or not a LoRA adapter.
    """
    file = Path(path).expanduser() / ADAPTER_CONFIG
    if not file.is_file():
        raise CheckpointError(str(path), f"no {ADAPTER_CONFIG}: not a peft adapter folder")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(str(file), f"not valid JSON ({type(err).__name__})") from err
    if not isinstance(data, dict) or data.get("peft_type") != "LORA":
        kind = data.get("peft_type") if isinstance(data, dict) else None
        raise CheckpointError(str(file), f"peft_type={kind!r}: only LoRA adapters are supported")
    if not (Path(path).expanduser() / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(str(path), f"no {ADAPTER_WEIGHTS} beside {ADAPTER_CONFIG}")
    return data


def adapter_base_model(path: str | Path) -> str | None:
    """The base model an adapter was trained on, as its ``adapter_config.json`` records it."""
    base = read_adapter_config(path).get("base_model_name_or_path")
    return base if isinstance(base, str) and base else None


def save_adapter(
    peft_model: Any,
    folder: str | Path,
    *,
    base_model: str,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write the LoRA adapter of ``peft_model`` (a ``peft.PeftModel``) into ``folder``, atomically.

    Args:
        base_model: recorded as ``base_model_name_or_path`` (what the user loaded: a folder,
            hub id or ``builtin:NAME``), so ``PeftModel.from_pretrained`` and ``dmpo eval``
            know the base.
        state_dict: the adapter tensors, when the live ones are not complete on this process
            (an engine that shards parameters gathers them first); default: the model's own.
    """
    kwargs = {} if state_dict is None else {"state_dict": dict(state_dict)}
    with atomic_folder(folder) as tmp:
        peft_model.save_pretrained(str(tmp), safe_serialization=True, **kwargs)
        config_file = tmp / ADAPTER_CONFIG
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_model
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(folder)


def load_adapter(model: torch.nn.Module, folder: str | Path, *, trainable: bool) -> tuple[Any, dict[str, Any]]:
    """``peft.PeftModel.from_pretrained(model, folder)``: the base ``model`` with the adapter
    applied (its weights trainable when ``trainable``), and the adapter's config.

    Raises:
        CheckpointError: not a LoRA adapter folder, or its modules/shapes do not fit the model.
    """
    config = read_adapter_config(folder)
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            net = PeftModel.from_pretrained(model, str(Path(folder).expanduser()), is_trainable=trainable)
    except Exception as err:  # noqa: BLE001 - peft raises many types for an adapter that does not fit
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(str(folder), f"the adapter does not fit this base model ({type(err).__name__}: "
                              f"{first})") from err
    return net, config


__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "adapter_base_model", "is_adapter_folder", "load_adapter",
           "read_adapter_config", "save_adapter"]
