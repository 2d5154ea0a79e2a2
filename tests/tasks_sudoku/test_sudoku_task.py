"""The 4x4 Sudoku task: grids, generation and split, CSV loading, prompts, reward, metric."""

from __future__ import annotations

import itertools
from pathlib import Path

import dmpo.tasks.sudoku as sudoku_plugin
import pytest
from dmpo.tasks.sudoku import (
    SudokuCellsReward,
    SudokuTask,
    all_grids,
    cell_accuracy,
    chat_answer,
    has_unique_solution,
    is_valid_grid,
    load_csv,
    solutions,
    split_grids,
)

from dmpo_core.contracts import Task
from dmpo_core.errors import ConfigError, DataError, InvalidArgumentError
from dmpo_core.registry import build_registry

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CSV = DATA / "sudoku_4x4_test.csv"
needs_csv = pytest.mark.skipif(not CSV.is_file(), reason=f"published test set not present at {CSV}")

PUZZLE = "3102200002100320"  # 8 blanks
SOLUTION = "3142243142131324"
ITEM = {"puzzle": PUZZLE, "solution": SOLUTION, "blanks": 8}


@pytest.fixture(scope="module")
def small_task() -> SudokuTask:
    return SudokuTask(train_size=400, test_size=64, seed=3)


# ---------------------------------------------------------------- grids and puzzles


def test_there_are_288_grids_all_valid_and_distinct():
    grids = all_grids()
    assert len(grids) == len(set(grids)) == 288
    assert all(is_valid_grid(g) for g in grids)
    assert list(grids) == sorted(grids)  # stable indices
    # relabelling the digits of a valid grid gives a valid grid: the set is closed under it
    for perm in itertools.permutations("1234"):
        table = str.maketrans("1234", "".join(perm))
        assert {g.translate(table) for g in grids} == set(grids)


def test_invalid_grids_are_rejected():
    assert not is_valid_grid("1234123412341234")  # columns repeat
    assert not is_valid_grid("1234341221434325")  # a 5
    assert not is_valid_grid("123")


def test_solutions_of_the_published_example():
    assert solutions(PUZZLE) == [SOLUTION]
    assert len(solutions("0" * 16)) == 288
    assert not has_unique_solution("1000000000000000")


def test_every_generated_puzzle_has_a_unique_solution_matching_its_item(small_task):
    for item in small_task.train_items() + small_task.test_items():
        assert solutions(item["puzzle"]) == [item["solution"]]
        assert item["blanks"] == item["puzzle"].count("0")


def test_blank_counts_follow_the_configured_ranges(small_task):
    train = {it["blanks"] for it in small_task.train_items()}
    assert train <= set(range(6, 11)) and len(train) == 5
    assert {it["blanks"] for it in small_task.test_items()} == {8}
    assert len(small_task.test_items()) == 64 and len(small_task.train_items()) == 400


def test_split_is_deterministic_and_disjoint_by_grid(small_task):
    train_grids, test_grids = split_grids(3, 48)
    assert (train_grids, test_grids) == split_grids(3, 48)
    assert len(test_grids) == 48 and len(train_grids) == 240 and not set(train_grids) & set(test_grids)
    assert split_grids(4, 48)[1] != test_grids  # the seed matters
    assert {it["solution"] for it in small_task.train_items()} <= set(train_grids)
    assert {it["solution"] for it in small_task.test_items()} <= set(test_grids)
    again = SudokuTask(train_size=400, test_size=64, seed=3)
    assert again.train_items() == small_task.train_items() and again.test_items() == small_task.test_items()
    assert len({it["puzzle"] for it in small_task.train_items()}) == 400  # no repeats


# ---------------------------------------------------------------- CSV


@needs_csv
def test_published_csv_loads_500_puzzles_with_8_blanks_and_consistent_solutions():
    items = load_csv(CSV)
    assert len(items) == 500
    for it in items:
        assert it["blanks"] == 8 and is_valid_grid(it["solution"])
        assert all(p in ("0", s) for p, s in zip(it["puzzle"], it["solution"]))


@needs_csv
def test_csv_test_split_keeps_its_grids_out_of_training():
    task = SudokuTask(csv_path=str(CSV), train_size=300)
    test = task.test_items()
    assert len(test) == 256 and test[0] == {"puzzle": PUZZLE, "solution": SOLUTION, "blanks": 8}
    assert not {it["solution"] for it in test} & {it["solution"] for it in task.train_items()}
    loose = SudokuTask(csv_path=str(CSV), train_size=300, exclude_test_grids=False, test_size=None)
    assert len(loose.test_items()) == 500
    assert not {it["puzzle"] for it in loose.test_items()} & {it["puzzle"] for it in loose.train_items()}


def test_missing_csv_file_or_column_is_a_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv"):
        load_csv(tmp_path / "nowhere.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Quiz,Solution\n3102200002100320,3142243142131324\n")
    with pytest.raises(DataError, match="bad.csv.*Puzzle"):
        load_csv(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Puzzle,Solution\n3102200002100320,4132243142131324\n")
    with pytest.raises(DataError, match="line 2"):
        load_csv(wrong)
    with pytest.raises(DataError, match="nowhere.csv"):
        SudokuTask(csv_path=str(tmp_path / "nowhere.csv"))


# ---------------------------------------------------------------- reward and metric


def _chat(answer: str) -> str:
    return f"<reasoning>fill the blanks</reasoning>\n<answer>\n{answer}\n</answer>"


def test_reward_hand_computed_examples():
    reward = SudokuCellsReward(prompt_style="chat")
    half = list(SOLUTION)
    for cell in (2, 5, 6, 7):  # 4 of the 8 blanks (cells 2,5,6,7,8,11,12,15) wrong
        half[cell] = "4" if half[cell] != "4" else "1"
    got = reward(
        ["p"] * 6,
        [
            _chat(SOLUTION),  # perfect: 1.0
            "I think the answer is 3142243142131324",  # no <answer> tag: 0
            _chat("".join(half)),  # 4 of 8 blanks right: 0.5
            _chat("1111111111111111") + " then " + _chat(SOLUTION),  # the last tag counts: 1.0
            _chat("3 1 4 2\n2 4 3 1\n4 2 1 3\n1 3 2 4"),  # spaces and newlines are ignored: 1.0
            _chat("31422431"),  # cut short, padded with 0: blanks 2,5,6,7 right, 8,11,12,15 not -> 4/8
        ],
        [ITEM] * 6,
    )
    assert got == [1.0, 0.0, 0.5, 1.0, 1.0, 0.5]


def test_given_cells_do_not_count_toward_the_reward():
    wrong_givens = "4" + SOLUTION[1:]  # cell 0 is a given: still 1.0
    assert cell_accuracy(wrong_givens, PUZZLE, SOLUTION) == 1.0
    assert cell_accuracy(None, PUZZLE, SOLUTION) == 0.0


@pytest.mark.parametrize(
    "garbage",
    ["", "<answer>", "</answer><answer>", "<answer></answer>", "<answer>" * 20_000, "\x00\uffff" * 50,
     "9" * 10_000, None, 12345],
)
def test_garbage_completions_never_raise(garbage):
    for style in ("chat", "compact"):
        task = SudokuTask(prompt_style=style, train_size=1, test_size=1)
        value = SudokuCellsReward(prompt_style=style)(["p"], [garbage], [ITEM])[0]
        assert 0.0 <= value <= 1.0
        assert 0.0 <= task.score(garbage, ITEM) <= 1.0
        task.extract_answer(garbage)


def test_compact_reward_reads_the_digits_of_the_completion():
    reward = SudokuCellsReward(prompt_style="compact")
    assert reward(["p"] * 3, [SOLUTION, " ".join(SOLUTION) + "<eos>", "xyz"], [ITEM] * 3) == [1.0, 1.0, 0.0]


def test_metric_sums_correct_empty_cells_over_all_empty_cells():
    task = SudokuTask(train_size=1, test_size=1)
    other = {"puzzle": "0" * 4 + SOLUTION[4:], "solution": SOLUTION, "blanks": 4}
    # item 1: 8/8 right; item 2 (4 blanks): no answer -> (8 + 0) / (8 + 4)
    got = task.metric([_chat(SOLUTION), "nothing"], [ITEM, other])
    assert got == {"accuracy": 8 / 12, "solved": 0.5, "n": 2.0}
    assert task.score(_chat(SOLUTION), ITEM) == 1.0
    assert task.extract_answer(_chat("1234") + _chat(SOLUTION)) == SOLUTION
    with pytest.raises(InvalidArgumentError):
        task.metric(["a"], [ITEM, other])


def test_chat_answer_takes_the_last_block_closed_or_not():
    # a final block that never closed (the generation ran out or ended its turn) is the answer,
    # as the papers' Sudoku parser reads an answer block ended by the end-of-turn token
    assert chat_answer("<answer>1</answer> <answer> 2 </answer> <answer>3") == "3"
    assert chat_answer("<answer>1</answer> <answer> 2 </answer> <answer> \n") == "2"  # an empty one is not
    assert chat_answer("<answer>\n4321<|eot_id|>1111<|endoftext|>") == "4321"  # text after the turn is not read
    assert chat_answer("<answer>4321</answer><answer></answer>") == "4321"  # an empty tag after it is not either
    assert chat_answer("<answer>a<answer>b</answer>") == "b"  # the opening nearest the last close
    assert chat_answer("</answer><answer>") is None
    assert chat_answer("<answer>12</answer> and </answer>") == "12</answer> and"  # the last close counts
    assert chat_answer("no tags") is None


# ---------------------------------------------------------------- prompts and fixed givens


def _char_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {ch: i for i, ch in enumerate(["[UNK]", "[MASK]", "=", "0", "1", "2", "3", "4"])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    return tok, vocab


def test_compact_prompt_is_16_digits_and_a_separator_one_token_each():
    tok, vocab = _char_tokenizer()
    task = SudokuTask(prompt_style="compact", train_size=1, test_size=1)
    text = task.prompt(ITEM, tok)
    assert text == PUZZLE + "="
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ids == [vocab[ch] for ch in PUZZLE] + [vocab["="]]


def test_prefill_has_the_mask_exactly_at_blanks_and_past_the_grid():
    tok, vocab = _char_tokenizer()
    mask_id = vocab["[MASK]"]
    task = SudokuTask(prompt_style="compact", fixed_givens=True, train_size=1, test_size=1)
    prefill = task.completion_prefill(ITEM, tok, 20, mask_id)
    assert len(prefill) == 20
    assert [p == mask_id for p in prefill[:16]] == [ch == "0" for ch in PUZZLE]
    assert all(p == vocab[ch] for p, ch in zip(prefill, PUZZLE) if ch != "0")
    assert prefill[16:] == [mask_id] * 4
    assert task.relevant_positions(ITEM, 20) == [ch == "0" for ch in PUZZLE] + [False] * 4
    with pytest.raises(InvalidArgumentError, match="gen_length"):
        task.completion_prefill(ITEM, tok, 12, mask_id)


def test_prefill_and_relevant_positions_are_off_where_they_do_not_apply():
    tok, _ = _char_tokenizer()
    compact = SudokuTask(prompt_style="compact", train_size=1, test_size=1)
    chat = SudokuTask(train_size=1, test_size=1)
    assert compact.completion_prefill(ITEM, tok, 16, 1) is None  # fixed_givens off
    assert compact.relevant_positions(ITEM, 16) == [ch == "0" for ch in PUZZLE]
    assert chat.completion_prefill(ITEM, tok, 16, 1) is None and chat.relevant_positions(ITEM, 16) is None


class _ChatTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return f"<user>{messages[0]['content']}</user><assistant>"


def test_chat_prompt_names_the_protocol_and_applies_the_chat_template():
    task = SudokuTask(train_size=1, test_size=1)
    plain = task.prompt(ITEM, None)
    assert PUZZLE in plain and "<answer>" in plain and "<reasoning>" in plain
    wrapped = task.prompt(ITEM, _ChatTokenizer())
    assert wrapped == f"<user>{plain}</user><assistant>"


def test_user_prompt_template_fills_the_puzzle(tmp_path):
    template = tmp_path / "t.txt"
    template.write_text("Solve {puzzle} please; braces {like this} stay.")
    task = SudokuTask(template=str(template), train_size=1, test_size=1)
    assert task.prompt(ITEM, None) == f"Solve {PUZZLE} please; braces {{like this}} stay."
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder")
    with pytest.raises(DataError, match="bad.txt"):
        SudokuTask(template=str(bad))
    with pytest.raises(DataError, match="missing.txt"):
        SudokuTask(template=str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------- config and registration


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prompt_style": "json"}, "prompt_style"),
        ({"fixed_givens": True}, "fixed_givens"),  # chat style has no fixed cell positions
        ({"min_blanks": 0}, "min_blanks"),
        ({"max_blanks": 13}, "max_blanks"),
        ({"min_blanks": 9, "max_blanks": 7}, "min_blanks"),
        ({"test_blanks": 20}, "test_blanks"),
        ({"test_size": 0}, "test_size"),
        ({"test_size": None}, "test_size"),
        ({"test_grids": 288}, "test_grids"),
        ({"train_size": -5}, "train_size"),
        ({"separator": "1"}, "separator"),
        ({"rewards": {"sudoku-cells": "high"}}, "rewards"),
        ({"reward_options": {"format-tags": {}}}, "reward_options"),  # not a component in use
    ],
)
def test_invalid_task_config_names_the_field(options, field):
    with pytest.raises(ConfigError) as info:
        SudokuTask(**options)
    assert any(p.startswith(f"{field}=") for p in info.value.problems), info.value.problems


def test_task_and_reward_register_through_the_hooks():
    registry = build_registry(plugins=[("sudoku", sudoku_plugin)], entry_points=False)
    task = registry.create("task", "sudoku", prompt_style="compact", train_size=5, test_size=5)
    assert isinstance(task, Task) and task.name == "sudoku"
    reward = registry.create("reward", "sudoku-cells", prompt_style="compact")
    assert reward(["p"], [SOLUTION], [ITEM]) == [1.0]
    (component,) = task.reward_components()
    assert component.name == "sudoku-cells" and component.weight == 1.0


def test_fixed_givens_prefill_drives_the_sampler_to_decode_only_the_blanks():
    torch = pytest.importorskip("torch")
    from dmpo_core.samplers import LowConfidenceSampler

    tok, vocab = _char_tokenizer()
    mask_id = vocab["[MASK]"]
    task = SudokuTask(prompt_style="compact", fixed_givens=True, train_size=1, test_size=1)
    prompt_ids = torch.tensor([tok.encode(task.prompt(ITEM, tok), add_special_tokens=False).ids])  # [1, P]
    prefill = torch.tensor([task.completion_prefill(ITEM, tok, 16, mask_id)])  # [1, L]
    # a fake model that prefers digit "1" everywhere: only the 8 blanks may change
    logits = torch.zeros(1, 16, len(vocab))  # [1, L, V]
    logits[..., vocab["1"]] = 5.0
    seen = []

    def fake(input_ids, attention_mask, *, last=None):
        seen.append(input_ids[:, -16:].clone())
        return logits.expand(input_ids.shape[0], -1, -1)

    sampler = LowConfidenceSampler(gen_length=16, block_length=16, steps=8)
    out = sampler(fake, prompt_ids, torch.ones_like(prompt_ids, dtype=torch.bool), mask_id=mask_id, prefill=prefill)
    text = "".join(tok.id_to_token(i) for i in out.completion_ids[0].tolist())
    assert out.nfe == 8 and all(text[i] == ch for i, ch in enumerate(PUZZLE) if ch != "0")
    assert all(text[i] == "1" for i, ch in enumerate(PUZZLE) if ch == "0")
    # the blanks (cells 2,5,6,7,8,11,12,15) hold 4,4,3,1,4,3,1,4: two of eight are 1 -> reward 2/8
    assert task.score(text, ITEM) == 2 / 8


def test_reward_weights_and_extra_components_compose_by_name(monkeypatch):
    from dmpo_core.rewards import score_components

    class _Entry:
        name = "always-one"

        @staticmethod
        def factory():
            return lambda prompts, completions, items: [1.0] * len(completions)

    class _Registry:  # stands in for the process-wide registry: one extra component
        def get(self, kind, name):
            assert (kind, name) == ("reward", "always-one")
            return _Entry

    real = sudoku_plugin.resolve_reward_components
    monkeypatch.setattr(sudoku_plugin, "resolve_reward_components", lambda w, **kw: real(w, registry=_Registry(), **kw))
    task = SudokuTask(rewards={"sudoku-cells": 2.0}, train_size=1, test_size=1)
    (cells,) = task.reward_components()
    assert cells.name == "sudoku-cells" and cells.weight == 2.0
    assert SudokuTask(rewards={"sudoku-cells": 0}, train_size=1, test_size=1).reward_components() == []
    mixed = SudokuTask(rewards={"always-one": 0.5}, train_size=1, test_size=1).reward_components()
    assert [(c.name, c.weight) for c in mixed] == [("sudoku-cells", 1.0), ("always-one", 0.5)]
    assert score_components(mixed, ["p"], [_chat(SOLUTION)], [ITEM]).total == [1.5]  # 1.0 * 1 + 0.5 * 1
    assert task.correctness(_chat(SOLUTION), ITEM) == 1.0


def test_asking_for_more_puzzles_than_exist_is_a_config_error_naming_the_field():
    # the one held-out grid of seed 0 has 128 uniquely solvable 4-given puzzles (counted over
    # all C(16, 12) = 1820 blank sets); 50,000 draws find them all, and 200 are asked for
    task = SudokuTask(test_grids=1, test_blanks=12, test_size=200, train_size=1)
    with pytest.raises(ConfigError) as info:
        task.test_items()
    assert info.value.problems[0].startswith("test_size=200: only 128 ")
