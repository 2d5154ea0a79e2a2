"""Throughput of every reward and answer parser of the built-in tasks, and the slowest input.

Run:  .venv/bin/python bench/parsers.py [--random N] [--seed S]

Each function is timed call by call on three input sets:

* ordinary: well-formed and typical wrong completions of the four answer styles;
* adversarial: the hostile inputs of ``tests/tasks/test_fuzz_rewards.py`` (100,000-character
  strings, 10,000-deep parentheses, ``9**9**9**9``, repeated or unbalanced tags ...);
* random: N seeded random "tag soups" built from answer fragments, to find slow inputs that
  nobody thought of.

It prints calls/s per set and the slowest input found with its time; any call over the
50 ms target is flagged. MATH answers are compared by math-verify in a helper process
(see ``dmpo.tasks.mathverify``): those calls include the pipe round trip; the helper is
started (and warmed) before timing and the result cache is cleared before each set, so the
numbers are for real comparisons. This is a benchmark, not a test: nothing fails.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from dmpo.tasks import countdown, gsm8k, math500, rewards
from dmpo.tasks.base import (
    extract_compact_answer,
    extract_tagged_answer,
    last_boxed,
    last_tag_content,
)
from dmpo.tasks.countdown import ExpressionError, countdown_reward, evaluate_expression
from dmpo.tasks.gsm8k import numbers_match, parse_last_number

from dmpo_core import build_registry

TARGET_S = 0.050
DEEP, LONG = 10_000, 100_000

ADVERSARIAL = [
    "", "9**9**9**9", "<answer>9**9**9**9</answer>", "<answer>9^{9^{9^{9}}}</answer>", "\\boxed{9^{9^{9^{9}}}}",
    "<answer>" + "(" * DEEP + "1" + ")" * DEEP + "</answer>", "(" * DEEP + "1" + ")" * DEEP, "(" * DEEP, ")" * DEEP,
    "x" * LONG, "9" * LONG, "<answer>" + "9" * LONG + "</answer>", "<answer>" * (LONG // 8),
    "</answer>" * (LONG // 9), "<answer></answer>" * (LONG // 17), "<reasoning>" * (LONG // 11),
    "</reasoning> <answer>" * (LONG // 21), "\\boxed{" * (LONG // 7), "\\boxed{" + "{" * DEEP + "}" * DEEP + "}",
    "<answer>\\boxed{" + "x" * LONG + "}</answer>", "\\boxed{" + "9^{" * 1000 + "9" + "}" * 1000 + "}",
    "1," * (LONG // 2), "-" * LONG, "<answer>" + "-" * DEEP + "1</answer>", "<answer>" + "1+" * (LONG // 2) + "1</answer>",
    "<answer>" + "1/" * 5000 + "0</answer>", "<answer>30-(100-93)</answer>" * 1000,
    "<reasoning>\n" + "r" * LONG + "\n</reasoning>\n<answer>\n12\n</answer>", "#### " + "9" * 5000,
    "\x00\ufeff\u202e<answer>\u0661\u0662</answer>", "<answer>\\frac{" + "1" * 300 + "}{3}</answer>",
    "\\boxed{\\sqrt{" * 500 + "2" + "}}" * 500, "<answer>(3, \\frac{\\pi}{2})" + " " * 300 + "</answer>",
]
ADVERSARIAL += [f"<reasoning>\n{t}\n</reasoning>\n<answer>\n{t}\n</answer>" for t in list(ADVERSARIAL)]

FRAGMENTS = [
    "<answer>", "</answer>", "<reasoning>", "</reasoning>", "\\boxed{", "{", "}", "(", ")", "9**9", "^{", "^",
    "30-(100-93)", "1,234", "$", "-", ".", "=", "\n", " ", "#### 72", "\\frac{3}{4}", "0.75", "/0", "×", "\\times",
    "12", "0", "99999999999999999999", "x", "\\sqrt{", "\\pi", "!", "\\text{cm}", "🙂", "\u0663",
]


def ordinary_completions() -> list[str]:
    """Typical completions: right and wrong answers in the chat and compact styles."""
    reasoning = "First, 100 - 93 = 7. Then 30 - 7 = 23, which is the target. " * 3
    answers = ["30-(100-93)", "(30+93)-100", "30+93", "72", "$1,234", "18.0", "\\frac{3}{4}", "0.75",
               "\\boxed{\\dfrac{3}{4}}", "(3, \\frac{\\pi}{2})", "2\\sqrt{5}", "x^2 + 1", "\\text{Evelyn}", "[-2, 7)"]
    out = []
    for a in answers:
        out += [
            f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{a}\n</answer>",
            f"<reasoning>{reasoning}</reasoning><answer>{a}</answer> trailing words",
            f"{reasoning} So the answer is \\boxed{{{a}}}.",
            a,
            reasoning,
        ]
    return out


def random_completions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 60))]
        if rng.random() < 0.1:  # sometimes a long run of one fragment
            parts.append(rng.choice(FRAGMENTS) * rng.randint(100, 5000))
        out.append("".join(parts))
    return out


def functions() -> dict[str, Callable[[str], object]]:
    """name -> one call on a completion."""
    reg = build_registry(plugins=[("rewards", rewards), ("countdown", countdown), ("gsm8k", gsm8k),
                                  ("math500", math500)], entry_points=False)
    cd_item = {"numbers": [30, 100, 93], "target": 23}
    gsm_item = {"question": "q", "answer": "72"}
    math_item = {"question": "q", "answer": "\\frac{3}{4}"}

    def evaluate(text: str) -> object:
        try:
            return evaluate_expression(text)
        except ExpressionError:
            return None

    fns: dict[str, Callable[[str], object]] = {
        "last_tag_content": last_tag_content,
        "last_boxed": last_boxed,
        "extract_tagged_answer": extract_tagged_answer,
        "extract_compact_answer": extract_compact_answer,
        "evaluate_expression": evaluate,
        "countdown_reward(raw)": lambda t: countdown_reward(t, [30, 100, 93], 23),
        "parse_last_number": parse_last_number,
        "numbers_match": lambda t: numbers_match(t, "72"),
    }
    gsm_task = gsm8k.Gsm8kTask.from_options(registry=reg, rewards={"length-penalty": 0.1})
    for comp in gsm_task.reward_components():
        if comp.name != "correct":
            fns[f"reward {comp.name}"] = lambda t, f=comp.fn: f(["p"], [t], [gsm_item])
    tasks = [
        ("countdown", countdown.CountdownTask, cd_item),
        ("gsm8k", gsm8k.Gsm8kTask, gsm_item),
        ("math500", math500.Math500Task, math_item),
    ]
    for name, cls, item in tasks:
        for style in ("chat", "compact"):
            task = cls.from_options(registry=reg, prompt_style=style)
            fns[f"correct {name}/{style}"] = lambda t, task=task, item=item: task.correctness(t, item)
    return fns


def run_set(name: str, fn: Callable[[str], object], inputs: list[str]) -> tuple[float, float, str]:
    """(calls/s, slowest seconds, slowest input) of ``fn`` over ``inputs``."""
    math500.answers_equivalent.__globals__["_cached_equivalent"].cache_clear()
    total, worst, worst_input = 0.0, -1.0, ""
    for text in inputs:
        start = time.perf_counter()
        fn(text)
        dt = time.perf_counter() - start
        total += dt
        if dt > worst:
            worst, worst_input = dt, text
    return len(inputs) / total if total > 0 else float("inf"), worst, worst_input


def show(text: str) -> str:
    if len(text) <= 70:
        return f"{text!r} (len {len(text)})"
    return f"{text[:40]!r}...{text[-25:]!r} (len {len(text)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=1000, help="random tag-soup inputs (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from dmpo.tasks.mathverify import answers_equivalent, shared_verifier

    start = time.perf_counter()
    answers_equivalent("1", "2/2")  # start and warm the math-verify helper (not timed below)
    print(f"math-verify helper ready in {time.perf_counter() - start:.2f} s (startup, excluded)")

    sets = {"ordinary": ordinary_completions(), "adversarial": ADVERSARIAL,
            "random": random_completions(args.random, args.seed)}
    print(f"inputs: {', '.join(f'{k} {len(v)}' for k, v in sets.items())}; target: every call < {TARGET_S * 1e3:.0f} ms\n")
    header = f"{'function':32s} " + " ".join(f"{k + ' calls/s':>20s}" for k in sets) + "  slowest call"
    print(header)
    print("-" * len(header))
    overall = (0.0, "", "")
    over_target = []
    for name, fn in functions().items():
        cells, worst = [], (-1.0, "")
        for set_name, inputs in sets.items():
            rate, slow, slow_input = run_set(name, fn, inputs)
            cells.append(f"{rate:20,.0f}")
            if slow > worst[0]:
                worst = (slow, slow_input)
            if slow > TARGET_S:
                over_target.append((name, set_name, slow, slow_input))
        flag = "  OVER" if worst[0] > TARGET_S else ""
        print(f"{name:32s} {' '.join(cells)}  {worst[0] * 1e3:8.2f} ms  {show(worst[1])}{flag}")
        if worst[0] > overall[0]:
            overall = (worst[0], name, worst[1])
    print(f"\nslowest call overall: {overall[1]} took {overall[0] * 1e3:.2f} ms on {show(overall[2])}")
    v = shared_verifier()
    print(f"math-verify helper: {v.timeouts} time-outs, {v.restarts} restarts")
    if over_target:
        print(f"{len(over_target)} function/set pairs had a call over {TARGET_S * 1e3:.0f} ms:")
        for name, set_name, slow, text in over_target:
            print(f"  {name} [{set_name}]: {slow * 1e3:.1f} ms on {show(text)}")
    else:
        print(f"every call stayed under {TARGET_S * 1e3:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
