"""Prompts: chat style (with and without a chat template), compact style, user template files."""

from __future__ import annotations

import pytest
from dmpo.tasks.base import (
    chat_prompt,
    extract_tagged_answer,
    last_boxed,
    last_tag_content,
    render_template,
)
from dmpo.tasks.countdown import CountdownTask
from dmpo.tasks.gsm8k import Gsm8kTask

from dmpo_core.errors import DataError

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ITEM = {"question": "What is 2+2?", "answer": "4", "solution": "#### 4"}


@pytest.fixture(scope="module")
def char_tokenizer():
    """A character-level tokenizer built offline with ``tokenizers``, with a chat template."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted({chr(c) for c in range(32, 127)} | {"\n"})
    vocab = {"[UNK]": 0, "<|end|>": 1, **{ch: i + 2 for i, ch in enumerate(alphabet)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_chat_style_applies_the_tokenizers_chat_template(char_tokenizer):
    task = Gsm8kTask.from_options()
    text = task.prompt(ITEM, char_tokenizer)
    assert text.startswith("<|user|>") and text.endswith("<|end|><|assistant|>")
    assert "Problem: What is 2+2?" in text and "<answer>" in text  # the built-in instruction
    ids = char_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert 0 < len(ids) <= len(text)


def test_chat_style_without_a_chat_template_is_plain_text(char_tokenizer):
    task = Gsm8kTask.from_options()
    plain = task.prompt(ITEM, None)
    assert plain.startswith("Work out the answer") and "Problem: What is 2+2?" in plain
    char_tokenizer.chat_template = None
    try:
        assert task.prompt(ITEM, char_tokenizer) == plain
    finally:
        char_tokenizer.chat_template = CHAT_TEMPLATE


def test_compact_style_is_the_bare_problem(char_tokenizer):
    assert Gsm8kTask.from_options(prompt_style="compact").prompt(ITEM, char_tokenizer) == (
        "Question: What is 2+2?\nAnswer:"
    )  # no chat template in compact style
    cd = CountdownTask.from_options(prompt_style="compact", n_train=1, n_test=1)
    assert cd.prompt({"numbers": [30, 100, 93], "target": 23}, char_tokenizer) == "30,100,93>23:"


def test_compact_stop_strings_cut_the_answer():
    task = Gsm8kTask.from_options(prompt_style="compact", compact_stop=["\n"])
    assert task.extract_answer("12\nthen more") == "12"
    assert task.correctness("12\nthen more", {"answer": "12"}) == 1.0


def test_user_template_file_reproduces_a_papers_prompt(tmp_path, char_tokenizer):
    template = tmp_path / "paper.txt"
    template.write_text("Respond in LaTeX, put the result in \\boxed{}.\nQ: {question}\nKeep {unknown} as is.")
    task = Gsm8kTask.from_options(template=str(template))
    text = task.prompt(ITEM, None)
    assert text == "Respond in LaTeX, put the result in \\boxed{}.\nQ: What is 2+2?\nKeep {unknown} as is."
    assert task.prompt(ITEM, char_tokenizer) == f"<|user|>{text}<|end|><|assistant|>"
    cd_template = tmp_path / "cd.txt"
    cd_template.write_text("Numbers: {numbers}. Target: {target}.")
    cd = CountdownTask.from_options(template=str(cd_template), prompt_style="compact", n_train=1, n_test=1)
    assert cd.prompt({"numbers": [1, 2, 3], "target": 6}, None) == "Numbers: 1, 2, 3. Target: 6."


def test_bad_template_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Gsm8kTask.from_options(template=str(tmp_path / "missing.txt"))
    no_placeholder = tmp_path / "fixed.txt"
    no_placeholder.write_text("Solve it.")
    with pytest.raises(DataError, match=r"none of the placeholders \{question\}"):
        Gsm8kTask.from_options(template=str(no_placeholder))


def test_render_template_only_touches_known_names():
    # unknown names and LaTeX groups stay; "{{" is not an escape (the inner {a} is a placeholder)
    assert render_template("{a} {b} {{a}} \\frac{1}{x}", {"a": 1}) == "1 {b} {1} \\frac{1}{x}"
    assert render_template("{a}-{b}", {"a": "x", "b": "{a}"}) == "x-{a}"  # no recursive expansion
    assert chat_prompt(None, "hi") == "hi"


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("<reasoning>r</reasoning><answer> 42 </answer>", "42"),
        ("<answer>1</answer> and later <answer>2</answer>", "2"),  # the last one
        ("<answer>1</answer><answer>2", "2"),  # an unclosed final block (ran out, or ended the turn) is read
        ("<answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),  # a box inside the tag is unwrapped
        ("so \\boxed{7} and \\boxed{8}", "8"),  # no tags: the last box
        ("\\boxed{7} then \\boxed{8", "7"),  # an unclosed box falls back to the previous one
        ("<answer>   </answer>", None),
        ("nothing here", None),
        ("", None),
    ],
)
def test_tagged_answer_extraction(completion, answer):
    assert extract_tagged_answer(completion) == answer


def test_tag_and_box_helpers():
    assert last_tag_content("<reasoning>a</reasoning>", "reasoning") == "a"
    assert last_tag_content("</answer><answer>", "answer") is None  # close before open
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c"
