"""The tiny tokenizer and the tiny checkpoint writers."""

from __future__ import annotations

import json
import string

import torch
from dmpo.backends.tiny import (
    CHARACTERS,
    SPECIAL_TOKENS,
    make_tiny_tokenizer,
    save_tiny_tokenizer,
    write_tiny_dream,
    write_tiny_llada,
)
from transformers import AutoTokenizer

PRINTABLE = "".join(chr(c) for c in range(32, 127)) + "\n"


def test_every_printable_ascii_text_round_trips_one_token_per_character():
    tokenizer = make_tiny_tokenizer()
    text = PRINTABLE + "Q: 12+30=42?\n  A: (7 * 6) - 0 = 42."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_every_digit_is_exactly_one_token():
    tokenizer = make_tiny_tokenizer()
    for digit in string.digits:
        assert len(tokenizer(digit, add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer("2026", add_special_tokens=False)["input_ids"]) == 4


def test_special_tokens_have_fixed_ids_and_stay_whole():
    tokenizer = make_tiny_tokenizer()
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(CHARACTERS) == 103
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.mask_token_id) == (
        0,
        0,
        1,
        2,
    )
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") == 3
    ids = tokenizer("a<|mdm_mask|><|mdm_mask|>b", add_special_tokens=False)["input_ids"]
    assert ids[1:3] == [2, 2] and len(ids) == 4
    assert tokenizer.decode(ids, skip_special_tokens=True) == "ab"


def test_saved_tokenizer_loads_offline_with_autotokenizer(tmp_path):
    save_tiny_tokenizer(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    text = "x = 3\ny = 4"
    assert (
        loaded(text, add_special_tokens=False)["input_ids"]
        == make_tiny_tokenizer()(text, add_special_tokens=False)["input_ids"]
    )
    assert loaded.mask_token == "<|mdm_mask|>"
    chat = loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert (
        chat == "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_writers_are_deterministic_and_configurable(tmp_path):
    a = write_tiny_llada(tmp_path / "a", d_model=32, n_layers=3, n_heads=2, seed=5, shards=3)
    b = write_tiny_llada(tmp_path / "b", d_model=32, n_layers=3, n_heads=2, seed=5, shards=3)
    config = json.loads((a / "config.json").read_text())
    assert (config["d_model"], config["n_layers"], config["n_heads"], config["vocab_size"]) == (32, 3, 2, 103)
    assert len(list(a.glob("model-*-of-00003.safetensors"))) == 3
    for shard in a.glob("*.safetensors"):
        assert shard.read_bytes() == (b / shard.name).read_bytes()
    before = torch.random.get_rng_state()
    dream = write_tiny_dream(tmp_path / "d", hidden_size=32, num_attention_heads=4, num_key_value_heads=1, seed=1)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched
    assert json.loads((dream / "config.json").read_text())["model_type"] == "Dream"
