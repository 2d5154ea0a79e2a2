"""Checkpoint folders on disk: find, check and write them.

Family-neutral: what differs between families comes from their
:class:`~dmpo.backends.family.Family`. Loading never writes into the user's folder and
turns every problem (no config.json, no weights, unknown ``model_type``,
missing/unexpected tensors, wrong shapes, a tokenizer without a mask token) into ONE
:class:`~dmpo_core.errors.CheckpointError` that names the file and what is wrong, before
transformers sees the folder. Saving writes into a temporary sibling folder and renames it
into place, so a crash never leaves half a checkpoint under the requested name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from dmpo.backends.family import FORMATS, Family
from safetensors import safe_open
from safetensors.torch import save_file

from dmpo_core.errors import CheckpointError, InvalidArgumentError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
"""Files fetched for a hub id (weights, configs, tokenizer, the original remote code)."""
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3
_LISTED = 5  # names listed per kind of problem before "... and N more"

# ---------------------------------------------------------------------------------------
# Finding the folder and reading it
# ---------------------------------------------------------------------------------------


def resolve_model_folder(model: str, *, revision: str | None = None) -> Path:
    """The local folder of ``model``: an existing folder, or a hub id downloaded with
    ``huggingface_hub.snapshot_download`` (into the hub cache, never into a user folder).

    Raises:
        CheckpointError: ``model`` is a file, a path that does not exist, or a hub id that
            cannot be downloaded (the message says to pass a local folder).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise CheckpointError(model, "is a file; pass the checkpoint FOLDER (the one holding config.json)")
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or not model.strip():
        raise CheckpointError(model, "no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as err:  # noqa: BLE001 - network, auth and missing-repo errors all mean the same here
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        raise CheckpointError(
            model,
            f"no local folder of that name, and downloading it from the Hugging Face hub failed ({reason}); "
            "pass a local checkpoint folder instead",
        ) from err


def read_config(folder: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of ``folder``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(str(path), "missing: a checkpoint folder needs config.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(str(path), f"not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise CheckpointError(str(path), f"expected a JSON object, found {type(raw).__name__}")
    return raw


@attrs.frozen(kw_only=True)
class TensorInfo:
    """Name, file and shape of one stored tensor (read from the safetensors header only)."""

    name: str
    file: str
    """File name inside the checkpoint folder."""
    shape: tuple[int, ...]
    dtype: str


def _read_header(path: Path) -> dict[str, TensorInfo]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {
                name: TensorInfo(
                    name=name,
                    file=path.name,
                    shape=tuple(handle.get_slice(name).get_shape()),
                    dtype=str(handle.get_slice(name).get_dtype()),
                )
                for name in handle.keys()  # noqa: SIM118 - safe_open is not a Mapping
            }
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for corrupt files
        raise CheckpointError(str(path), f"cannot read the safetensors header ({err})") from err


def scan_weights(folder: Path) -> dict[str, TensorInfo]:
    """Every tensor of the checkpoint, from ``model.safetensors`` (single file) or
    ``model.safetensors.index.json`` (sharded); reads headers, not data.

    Raises:
        CheckpointError: no safetensors weights, an index naming a missing file or a
            tensor its file does not hold, or an unreadable file.
    """
    single = folder / WEIGHTS_FILE
    if single.is_file():  # transformers prefers the single file too
        return _read_header(single)
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise CheckpointError(str(index), f"not a valid index ({err})") from err
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise CheckpointError(str(index), "not a valid index: needs a 'weight_map' object of tensor -> file")
        found: dict[str, TensorInfo] = {}
        for file in sorted(set(weight_map.values())):
            if not (folder / file).is_file():
                raise CheckpointError(str(index), f"lists shard {file!r}, which is not in the folder")
            header = _read_header(folder / file)
            for name in (n for n, f in weight_map.items() if f == file):
                if name not in header:
                    raise CheckpointError(
                        str(folder / file), f"does not hold tensor {name!r} that {WEIGHTS_INDEX} places there"
                    )
                found[name] = header[name]
        return found
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if shards:
        raise CheckpointError(str(folder), f"has {', '.join(shards)} but neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX}")
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if others:
        raise CheckpointError(
            str(folder),
            f"holds {', '.join(others)}: only safetensors weights are supported (convert them with "
            "safetensors.torch.save_file, or re-save the model with transformers' save_pretrained)",
        )
    raise CheckpointError(str(folder), f"no weights: expected {WEIGHTS_FILE} or {WEIGHTS_INDEX} with its shards")


def expected_shapes(family: Family, config: Any) -> dict[str, tuple[int, ...]]:
    """Tensor names (transformers layout) and shapes that ``config`` requires, taken from
    the model class itself built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = family.model_class(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def _listing(items: Sequence[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_LISTED])
    return shown + (f" ... and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def check_tensors(
    folder: Path, found: Mapping[str, TensorInfo], expected: Mapping[str, tuple[int, ...]], family: Family, fmt: str
) -> None:
    """Compare the stored tensors with what ``config.json`` requires; raise ONE error listing
    every missing, unexpected and mis-shaped tensor (by its stored name and file)."""
    rename = family.to_converted_name if fmt == "original" else (lambda n: n)
    stored_name = family.to_original_name if fmt == "original" else (lambda n: n)
    seen: set[str] = set()
    unexpected: list[TensorInfo] = []
    mismatched: list[str] = []
    files: set[str] = set()
    for info in found.values():
        if info.name.endswith("rotary_emb.inv_freq"):  # an old buffer some checkpoints carry
            continue
        converted = rename(info.name)
        if converted is None or converted not in expected:
            unexpected.append(info)
            files.add(info.file)
            continue
        seen.add(converted)
        if info.shape != expected[converted]:
            implied = list(expected[converted])
            mismatched.append(f"{info.name} in {info.file} has shape {list(info.shape)}, config.json implies {implied}")
            files.add(info.file)
    missing = [stored_name(n) or n for n in expected if n not in seen]
    problems = []
    if missing:
        source = WEIGHTS_FILE if (folder / WEIGHTS_FILE).is_file() else WEIGHTS_INDEX
        files.add(source)
        problems.append(f"{len(missing)} tensor(s) that config.json requires are not in {source}: {_listing(missing)}")
    if unexpected:
        listed = [f"{t.name} (in {t.file})" for t in unexpected]
        problems.append(
            f"{len(unexpected)} unexpected tensor(s) for a {fmt} {family.name} checkpoint: {_listing(listed)}"
        )
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, sep='; ')}")
    if problems:
        where = folder / next(iter(files)) if len(files) == 1 else folder
        raise CheckpointError(str(where), "; ".join(problems))


# ---------------------------------------------------------------------------------------
# Tokenizer and special ids
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SpecialIds:
    """Special token ids of a checkpoint, read from its config and tokenizer."""

    mask: int
    eos: int
    pad: int
    eot: int | None = None
    bos: int | None = None
    more_stops: tuple[int, ...] = ()
    """Further ids that end a turn: the tokenizer's other end-of-turn tokens, config.json's other eos ids."""

    @property
    def stops(self) -> tuple[int, ...]:
        """Every id that ends a completion: eos, end of turn, then :attr:`more_stops` (each once)."""
        ordered = (self.eos, *(() if self.eot is None else (self.eot,)), *self.more_stops)
        return tuple(dict.fromkeys(ordered))


def load_tokenizer(folder: Path, config: Any = None) -> Any:
    """``AutoTokenizer.from_pretrained(folder)``, offline, with a clear error.

    ``config`` (the converted transformers config) spares transformers from parsing an
    original config.json it does not know (it would warn and fall back).
    """
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(
            str(folder),
            f"no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}): copy the base model's tokenizer into the folder",
        )
    from transformers import AutoTokenizer

    kwargs = {} if config is None else {"config": config}
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for broken tokenizer files
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(str(folder), f"cannot load the tokenizer ({type(err).__name__}: {first})") from err


def _token_id(tokenizer: Any, token: str) -> int | None:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or tokenizer.convert_ids_to_tokens(token_id) != token:
        return None  # unknown tokens map to the unk id
    return token_id


def _first_int(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


def resolve_special_ids(
    folder: Path, raw_config: Mapping[str, Any], tokenizer: Any, family: Family, vocab_rows: int
) -> SpecialIds:
    """Mask, eos, pad, end-of-turn and bos ids from ``config.json`` and the tokenizer.

    End of turn is the first of the family's end-of-turn token strings the tokenizer knows;
    the others it knows, the further ids of a list-valued ``eos_token_id`` and the tokenizer's
    own eos become :attr:`SpecialIds.more_stops`, so decoding stops at every one of them.

    The mask id is the tokenizer's ``mask_token`` or the first of the family's mask-token
    strings it knows; config.json's ``mask_token_id`` must agree. eos and pad come from
    config.json, else the tokenizer (pad falls back to eos).

    Raises:
        CheckpointError: no mask token, a disagreement, a missing eos, or an id outside the
            embedding matrix.
    """
    tok_file = str(folder / ("tokenizer_config.json" if (folder / "tokenizer_config.json").is_file() else ""))
    config_file = str(folder / CONFIG_FILE)
    mask = tokenizer.mask_token_id if getattr(tokenizer, "mask_token", None) else None
    for name in family.tokens.mask:
        mask = mask if mask is not None else _token_id(tokenizer, name)
    if mask is None:
        raise CheckpointError(
            tok_file,
            "the tokenizer has no mask token (no mask_token and none of "
            f"{', '.join(family.tokens.mask)}); a masked diffusion LM needs one: use the base model's tokenizer",
        )
    declared = _first_int(raw_config.get("mask_token_id"))
    if declared is not None and declared != mask:
        raise CheckpointError(
            config_file, f"mask_token_id={declared} but the tokenizer's mask token has id {mask}; make them agree"
        )
    eos = _first_int(raw_config.get("eos_token_id"))
    eos = eos if eos is not None else tokenizer.eos_token_id
    if eos is None:
        raise CheckpointError(config_file, "no eos_token_id, and the tokenizer has no eos_token")
    pad = _first_int(raw_config.get("pad_token_id"))
    pad = pad if pad is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    bos = _first_int(raw_config.get("bos_token_id"))
    bos = bos if bos is not None else tokenizer.bos_token_id
    turn_ends = [i for i in (_token_id(tokenizer, name) for name in family.tokens.eot) if i is not None]
    eot = turn_ends[0] if turn_ends else None
    declared_eos = raw_config.get("eos_token_id")
    other_eos = [int(i) for i in declared_eos if isinstance(i, int)] if isinstance(declared_eos, list | tuple) else []
    more = tuple(i for i in (*turn_ends[1:], *other_eos, tokenizer.eos_token_id) if isinstance(i, int))
    ids = SpecialIds(mask=int(mask), eos=int(eos), pad=int(pad), eot=eot, bos=bos, more_stops=more)
    values = {**attrs.asdict(ids), "more_stops": None}
    bad = [f"{k} id {v}" for k, v in values.items() if v is not None and not 0 <= v < vocab_rows]
    bad += [f"stop id {v}" for v in more if not 0 <= v < vocab_rows]
    if bad:
        raise CheckpointError(config_file, f"{', '.join(bad)} outside the embedding matrix of {vocab_rows} rows")
    return ids


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` (an existing folder
    is swapped out and removed), on error it is deleted and ``path`` is untouched."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise InvalidArgumentError("path", str(path), "is a file; pass a folder path to save into")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_shards(
    folder: Path,
    tensors: Mapping[str, torch.Tensor],
    *,
    shards: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[str]:
    """Write ``tensors`` as ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json``.

    ``shards`` fixes the number of files; otherwise files hold at most ``max_shard_bytes``
    (a larger single tensor gets a file of its own). Returns the shard file names.
    """
    sizes = {name: t.numel() * t.element_size() for name, t in tensors.items()}
    total = sum(sizes.values())
    count = shards or max(1, math.ceil(total / max_shard_bytes))
    count = max(1, min(count, len(tensors)))
    groups: list[list[str]] = [[] for _ in range(count)]
    done, k = 0, 0
    for name in tensors:
        if groups[k] and done >= total * (k + 1) / count and k < count - 1:
            k += 1
        groups[k].append(name)
        done += sizes[name]
    groups = [g for g in groups if g]
    files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for file, names in zip(files, groups, strict=True):
        data = {n: tensors[n].detach().to("cpu").contiguous() for n in names}
        save_file(data, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    write_json(folder / WEIGHTS_INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return files


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the spelling config files use)."""
    return str(dtype).removeprefix("torch.")


def export_checkpoint(
    path: str | os.PathLike[str],
    *,
    family: Family,
    config: Any,
    tensors: Mapping[str, torch.Tensor],
    ids: SpecialIds,
    fmt: str = "original",
    template: Mapping[str, Any] | None = None,
    write_tokenizer: Callable[[Path], None] | None = None,
    extra_files: Sequence[Path] = (),
    shards: int | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write a checkpoint folder atomically: config.json, safetensors shards + index, tokenizer files.

    Args:
        family: the model family (decides the original layout).
        config: the transformers config of the model (``LlamaConfig``/``Qwen2Config``).
        tensors: weights under their transformers names (a tied head already left out).
        ids: special ids, written into config.json.
        fmt: ``original`` (the published layout) or ``converted`` (transformers layout).
        template: the original config.json the model came from, so unrelated keys survive.
        write_tokenizer: writes the tokenizer files into a folder (e.g. ``tokenizer.save_pretrained``).
        extra_files: files copied as they are (e.g. the original remote code ``*.py``).
        shards: number of weight files (default: by ``max_shard_bytes``).
    """
    if fmt not in FORMATS:
        raise InvalidArgumentError("format", fmt, f"use one of {', '.join(FORMATS)}")
    first = next(iter(tensors.values()))
    dtype = dtype_name(first.dtype)
    id_keys = {"mask_token_id": ids.mask, "eos_token_id": ids.eos, "pad_token_id": ids.pad}
    if ids.bos is not None:
        id_keys["bos_token_id"] = ids.bos
    if fmt == "original":
        raw = family.from_config(config, template, dtype) | id_keys
        renamed = {}
        for name, tensor in tensors.items():
            original = family.to_original_name(name)
            if original is None:
                raise InvalidArgumentError(
                    "format", fmt, f"tensor {name!r} has no {family.name} name; save with format='converted'"
                )
            renamed[original] = tensor
        tensors = renamed
    else:
        raw = family.converted_config(config) | id_keys
        raw.update(architectures=[family.converted_architecture], is_causal=False, use_cache=False, dtype=dtype)
    with atomic_folder(path) as tmp:
        write_json(tmp / CONFIG_FILE, raw)
        write_shards(tmp, tensors, shards=shards, max_shard_bytes=max_shard_bytes)
        if write_tokenizer is not None:
            write_tokenizer(tmp)
        for extra in extra_files:
            if not (tmp / extra.name).exists():
                shutil.copy2(extra, tmp / extra.name)
    return Path(path)
