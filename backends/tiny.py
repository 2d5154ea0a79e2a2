"""Tiny random checkpoints in the REAL on-disk formats, and a tiny character tokenizer.

Tests, benchmarks and the built-in small models all build their checkpoints here
(:func:`write_tiny_checkpoint` for any family, a plugin's too; :func:`write_tiny_llada` and
:func:`write_tiny_dream` fill in those families' config.json), so every
one of them goes through the same loading path as LLaDA-8B or Dream-7B: an original LLaDA
folder (config.json with ``d_model`` ..., tensors ``model.transformer.blocks.N.*``,
sharded safetensors with an index) or a Dream folder (Qwen2 tensors, ``model_type
"Dream"``), each with tokenizer files that ``AutoTokenizer.from_pretrained`` reads offline.

The tokenizer is character level over printable ASCII (``' '`` to ``'~'``) plus newline:
every digit is exactly one token and any such text round-trips through encode/decode.
Its special tokens follow LLaDA's names (mask ``<|mdm_mask|>``, eos = pad
``<|endoftext|>``, bos ``<|startoftext|>``, end of turn ``<|eot_id|>``, chat headers), and
it carries a small LLaDA-style chat template.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from dmpo.backends.dream import DREAM
from dmpo.backends.family import FORMATS, Family
from dmpo.backends.hf_checkpoint import SpecialIds, expected_shapes, export_checkpoint, write_json
from dmpo.backends.llada import LLADA

from dmpo_core.errors import InvalidArgumentError

MASK_TOKEN = "<|mdm_mask|>"
EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|eot_id|>"
HEADER_START = "<|start_header_id|>"
HEADER_END = "<|end_header_id|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (EOS_TOKEN, BOS_TOKEN, MASK_TOKEN, EOT_TOKEN, HEADER_START, HEADER_END, UNK_TOKEN)
"""Special tokens, ids 0..6 in this order (eos = pad = 0, mask = 2)."""
CHARACTERS = tuple(chr(c) for c in range(32, 127)) + ("\n",)
"""Printable ASCII and newline, ids 7..102."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first %}{{ bos_token }}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""LLaDA-style turns: ``<|startoftext|><|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>``."""


def _backend_tokenizer() -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token per character
    tokenizer.decoder = decoders.Fuse()  # join tokens with no separator
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


def _tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "mask_token": MASK_TOKEN,
        "unk_token": UNK_TOKEN,
        "additional_special_tokens": [EOT_TOKEN, HEADER_START, HEADER_END],
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "padding_side": "left",
    }


def make_tiny_tokenizer() -> Any:
    """The tiny character-level fast tokenizer (a ``transformers`` tokenizer, in memory).

    103 ids: the special tokens 0..6 (eos = pad 0, bos 1, mask 2, end of turn 3), then
    printable ASCII and newline. Characters outside that set become ``<|unk|>``.
    """
    from transformers import PreTrainedTokenizerFast

    cfg = _tokenizer_config()
    return PreTrainedTokenizerFast(
        tokenizer_object=_backend_tokenizer(),
        **{k: v for k, v in cfg.items() if k not in ("tokenizer_class", "model_max_length")},
        model_max_length=cfg["model_max_length"],
    )


def save_tiny_tokenizer(folder: str | os.PathLike[str]) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _backend_tokenizer().save(str(folder / "tokenizer.json"))
    cfg = _tokenizer_config()
    write_json(folder / "tokenizer_config.json", cfg)
    keys = ("bos_token", "eos_token", "pad_token", "mask_token", "unk_token", "additional_special_tokens")
    write_json(folder / "special_tokens_map.json", {k: cfg[k] for k in keys})


def _tiny_ids() -> SpecialIds:
    index = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    return SpecialIds(
        mask=index[MASK_TOKEN], eos=index[EOS_TOKEN], pad=index[EOS_TOKEN], eot=index[EOT_TOKEN], bos=index[BOS_TOKEN]
    )


def _random_weights(
    family: Family, config: Any, seed: int, init_std: float, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Random weights for ``config`` under transformers names, from a private generator.

    Norm weights are ``1 + 0.1 * noise`` (not all ones), so a swapped norm is caught by the
    numerical checks; everything else is ``init_std * noise``.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in sorted(expected_shapes(family, config).items()):
        noise = torch.randn(shape, generator=generator)
        is_norm = "norm" in name
        tensors[name] = (1.0 + 0.1 * noise if is_norm else init_std * noise).to(dtype)
    return tensors


def write_tiny_checkpoint(
    path: str | os.PathLike[str],
    family: Family,
    raw: Mapping[str, Any],
    *,
    seed: int = 0,
    shards: int = 2,
    fmt: str = "original",
    dtype: str = "float32",
    init_std: float = 0.02,
) -> Path:
    """Write a random checkpoint of ``family`` whose original config.json is ``raw``, with the
    tiny tokenizer, and return its path. Any family works (a plugin's too): the tensors
    are the ones its model class has for ``family.to_config(raw)``.

    Args:
        path: the folder to create (replaced when it exists).
        family: the model family (decides both layouts).
        raw: the original-layout config.json (sizes, ``model_type`` ...).
        seed: seed of the random weights (a private generator; global RNG untouched).
        shards: number of safetensors files (with ``model.safetensors.index.json``).
        fmt: ``original`` (the family's published layout) or ``converted`` (transformers layout).
        dtype: ``float32`` or ``bfloat16`` weights.
        init_std: standard deviation of the random projection and embedding weights.
    """
    if fmt not in FORMATS:
        raise InvalidArgumentError("fmt", fmt, "use 'original' or 'converted'")
    config = family.to_config(raw, str(path))
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    return export_checkpoint(
        path,
        family=family,
        config=config,
        tensors=_random_weights(family, config, seed, init_std, torch_dtype),
        ids=_tiny_ids(),
        fmt=fmt,
        template=raw,
        write_tokenizer=save_tiny_tokenizer,
        shards=shards,
    )


def write_tiny_llada(
    path: str | os.PathLike[str],
    *,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    mlp_hidden_size: int | None = None,
    vocab_size: int | None = None,
    rope_theta: float = 500000.0,
    rope: bool = True,
    max_sequence_length: int = 4096,
    extra_config: Mapping[str, Any] | None = None,
    **checkpoint: Any,
) -> Path:
    """Write a random LLaDA checkpoint folder and return its path.

    Args:
        path: the folder to create (replaced when it exists).
        d_model, n_layers, n_heads, n_kv_heads, mlp_hidden_size: sizes (defaults: kv heads =
            heads, MLP 3 x d_model as in LLaDA-8B's 12288 = 3 x 4096).
        vocab_size: embedding rows (default: the tiny tokenizer's 103; more rows are unused ids).
        rope: False writes LLaDA's ``rope: false`` variant: learned absolute position
            embeddings ``transformer.wpe`` of ``max_sequence_length`` rows instead of RoPE.
        extra_config: keys merged into the original config.json (to test odd configs).
        checkpoint: ``seed``, ``shards``, ``fmt`` (``original``: LLaDA layout, ``converted``:
            Llama layout), ``dtype``, ``init_std``, as :func:`write_tiny_checkpoint` takes them.
    """
    raw: dict[str, Any] = {
        "model_type": "llada",
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads or n_heads,
        "mlp_hidden_size": mlp_hidden_size or 3 * d_model,
        "mlp_ratio": 4,
        "vocab_size": vocab_size or len(SPECIAL_TOKENS + CHARACTERS),
        "embedding_size": vocab_size or len(SPECIAL_TOKENS + CHARACTERS),
        "rope": rope,
        "rope_theta": rope_theta,
        "rms_norm_eps": 1e-5,
        "max_sequence_length": max_sequence_length,
        **dict(extra_config or {}),
    }
    return write_tiny_checkpoint(path, LLADA, raw, **checkpoint)


def write_tiny_dream(
    path: str | os.PathLike[str],
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    rope_theta: float = 1_000_000.0,
    extra_config: Mapping[str, Any] | None = None,
    **checkpoint: Any,
) -> Path:
    """Write a random Dream checkpoint folder (Qwen2 tensors with q/k/v biases, grouped
    key/value heads, ``model_type "Dream"``) and return its path.

    Arguments as :func:`write_tiny_llada` (``checkpoint``: those of :func:`write_tiny_checkpoint`),
    with Qwen2's size names; ``intermediate_size``
    defaults to ``4 * hidden_size``; ``fmt="converted"`` writes ``model_type "qwen2"``.
    """
    rows = vocab_size or len(SPECIAL_TOKENS + CHARACTERS)
    raw: dict[str, Any] = {
        "model_type": "Dream",
        "vocab_size": rows,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 4 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": rope_theta,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        **dict(extra_config or {}),
    }
    return write_tiny_checkpoint(path, DREAM, raw, **checkpoint)
