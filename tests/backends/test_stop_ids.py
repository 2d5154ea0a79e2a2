"""A checkpoint's stop ids: eos and every end-of-turn token its tokenizer knows (LLaDA's
``<|eot_id|>``, Dream's ``<|im_end|>``), and further ids of a list-valued eos in config.json."""

from __future__ import annotations

from pathlib import Path

import pytest
from dmpo.backends.dream import DREAM, load_dream_policy
from dmpo.backends.hf_checkpoint import SpecialIds, resolve_special_ids
from dmpo.backends.llada import LLADA, load_llada_policy

from dmpo_core.testing.backend_contract import BackendContractError, check_special_ids


class StubTokenizer:
    """Just what resolve_special_ids reads: token <-> id lookups and the declared specials."""

    def __init__(self, vocab: dict[str, int], eos: str) -> None:
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        self.mask_token = None
        self.eos_token_id = vocab[eos]
        self.pad_token_id = None
        self.bos_token_id = None

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.vocab.get(token, 0)  # unknown tokens map to the unk id 0

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.inverse[token_id]


def test_dream_stops_at_im_end_and_at_eot_and_at_every_declared_eos():
    tok = StubTokenizer({"<unk>": 0, "<|endoftext|>": 1, "<|im_end|>": 2, "<|eot_id|>": 3, "<|mask|>": 4,
                         "<|end|>": 5}, eos="<|endoftext|>")
    ids = resolve_special_ids(Path("x"), {"eos_token_id": [1, 5]}, tok, DREAM, vocab_rows=6)
    assert ids.eos == 1 and ids.eot == 2  # the first end-of-turn name the tokenizer knows
    assert ids.stops == (1, 2, 3, 5)  # eos, end of turn, the other end of turn, the other declared eos


def test_llada_stops_at_eot_and_eos():
    tok = StubTokenizer({"<unk>": 0, "<|endoftext|>": 1, "<|eot_id|>": 2, "<|mdm_mask|>": 3}, eos="<|endoftext|>")
    ids = resolve_special_ids(Path("x"), {"eos_token_id": 1}, tok, LLADA, vocab_rows=4)
    assert ids.stops == (1, 2)
    assert SpecialIds(mask=3, eos=1, pad=1).stops == (1,)  # no end of turn: eos alone


@pytest.mark.parametrize("loader", ["llada", "dream"])
def test_loaded_policies_expose_their_stop_ids(loader, tiny_llada, tiny_dream):
    policy = load_llada_policy(str(tiny_llada)) if loader == "llada" else load_dream_policy(str(tiny_dream))
    eot = policy.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert policy.eot_id == eot and policy.stop_ids == (policy.eos_id, eot)
    check_special_ids(policy)


def test_the_contract_catches_stop_ids_without_the_end_of_turn(tiny_llada):
    policy = load_llada_policy(str(tiny_llada))
    policy.stop_ids = (policy.eos_id,)
    with pytest.raises(BackendContractError, match="lacks eot_id"):
        check_special_ids(policy)
