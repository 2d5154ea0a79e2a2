"""Shared pieces of task plugins: reward composition, answer extraction, prompts, data loading.

Reward composition lives in :mod:`dmpo_core.rewards` (the training loop uses it); it is
re-exported here for task authors. The helpers below are what the built-in tasks share
(and what a third-party task can reuse): answer-tag and ``\\boxed{}`` extraction that stays
linear on adversarial completions, prompt templates with ``{name}`` placeholders, the
chat/compact prompt styles, ``datasets`` loading with one clear :class:`DataError` per
problem, and reward components resolved by name through the plugin registry.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from dmpo.tasks import protocols
from dmpo_core.errors import DataError, InvalidArgumentError
from dmpo_core.rewards import ComposedRewards, RewardComponent, score_components

__all__ = [
    "AnswerTask",
    "ComposedRewards",
    "DataError",
    "RewardComponent",
    "TaskOptions",
    "builtin_template",
    "chat_prompt",
    "answer_block",
    "cut_at_end_of_turn",
    "cut_at_stops",
    "extract_compact_answer",
    "extract_tagged_answer",
    "last_boxed",
    "last_tag_content",
    "load_rows",
    "merge_reward_weights",
    "read_template",
    "render_template",
    "resolve_reward_components",
    "score_components",
]


# ---------------------------------------------------------------------------------------
# Answer extraction. Every helper here is linear in the length of its input (str.find /
# str.rfind and one left-to-right scan, no backtracking regex), because completions come
# from a model being trained and may be 100,000 characters of repeated tags.

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
REASONING_OPEN = "<reasoning>"
REASONING_CLOSE = "</reasoning>"
BOXED = "\\boxed{"
_BRACE = re.compile(r"[{}]")
_EMPTY_BOX = re.compile(r"\\boxed\{\s*\}")

END_OF_TURN_TEXTS: tuple[str, ...] = ("<|eot_id|>", "<|im_end|>", "<|endoftext|>")
"""End-of-turn and end-of-text tokens as text (LLaDA's, Dream's and both's eos). The decoder
already cuts a completion at the first stop token id (:func:`dmpo_core.training.rollout.decode_completions`);
a completion that kept them as text (generations from elsewhere, decoded without skipping
special tokens) is cut at the first of these before its answer is read."""


def last_tag_content(text: str, tag: str = "answer") -> str | None:
    """Content of the LAST complete ``<tag>...</tag>`` pair of ``text`` (None if there is none).

    The closing tag found last is matched with the nearest opening tag before it, so a
    completion that restates the format (``<answer>...</answer>`` in its reasoning) and
    answers at the end is read at the end, as the papers' parsers do.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return text[start + len(open_tag) : end]


def last_boxed(text: str, *, nonempty: bool = False) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces (None if none is closed).

    Nested braces are counted (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); an
    unclosed last box falls back to the previous one, and with ``nonempty`` so does a box
    holding only white space (``\\boxed{}`` written as a placeholder). Linear: when a box is
    unclosed, an earlier box can only close before the later one starts (the later box's
    ``{`` is never matched), so each box scans only up to the next box.
    """
    end = len(text)
    while True:
        start = text.rfind(BOXED, 0, end)
        if start < 0:
            return None
        if text.find("}", start, end) < 0:  # fast path (in C) for a run of unclosed boxes
            end = start
            continue
        depth = 1
        for brace in _BRACE.finditer(text, start + len(BOXED), end):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                content = text[start + len(BOXED) : brace.start()]
                if nonempty and not content.strip():
                    break  # an empty box: try the box before it
                return content
        end = start  # unclosed (or empty) before `end`: try the box before it


def _is_placeholder(content: str) -> bool:
    """True for white space and empty ``\\boxed{}`` only: a format restated, not an answer."""
    return not _EMPTY_BOX.sub("", content).strip()


def answer_block(text: str, tag: str = "answer") -> str | None:
    """Content of the last non-empty ``<tag>`` block of ``text``, closed or not (None if none).

    A block opened after the last closing tag and never closed (the generation ran out, or
    ended its turn inside the block) reaches to the end of ``text``; otherwise the last
    complete pair is read (:func:`last_tag_content`). A block holding only white space and
    empty boxes (``<answer></answer>`` restating the format) does not count: the complete
    pair before it is read instead. Linear in ``len(text)``.
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    end = len(text)
    last_open = text.rfind(open_tag)
    if last_open >= 0 and text.find(close_tag, last_open) < 0:  # an unclosed final block
        content = text[last_open + len(open_tag):]
        if not _is_placeholder(content):
            return content
        end = last_open
    while True:
        close = text.rfind(close_tag, 0, end)
        if close < 0:
            return None
        start = text.rfind(open_tag, 0, close)
        if start < 0:
            return None
        content = text[start + len(open_tag): close]
        if not _is_placeholder(content):
            return content
        end = start  # empty: the pair before it


def extract_tagged_answer(text: str) -> str | None:
    """The answer of a chat-style completion, stripped; None if there is none.

    The text is read up to its first end-of-turn token (:data:`END_OF_TURN_TEXTS`); then the
    last non-empty answer block, closed or not (:func:`answer_block`), with a non-empty
    ``\\boxed{}`` inside unwrapped; without one, the last non-empty ``\\boxed{}`` of the text.
    Empty tags and empty boxes are placeholders, never the answer.
    """
    text = cut_at_end_of_turn(text)
    found = answer_block(text, "answer")
    if found is not None:
        inner = last_boxed(found, nonempty=True)
        found = inner if inner is not None else _EMPTY_BOX.sub("", found)
    else:
        found = last_boxed(text, nonempty=True)
    if found is None:
        return None
    found = found.strip()
    return found or None


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the whole text if none occurs)."""
    cut = len(text)
    for stop in stops:
        if stop:
            pos = text.find(stop, 0, cut)
            if pos >= 0:
                cut = pos
    return text[:cut]


def cut_at_end_of_turn(text: str) -> str:
    """``text`` up to its first end-of-turn or end-of-text token written as text (:data:`END_OF_TURN_TEXTS`)."""
    return cut_at_stops(text, END_OF_TURN_TEXTS)


def extract_compact_answer(text: str, stops: Sequence[str] = ()) -> str | None:
    """The answer of a compact-style completion: the whole completion up to its end of turn
    (already cut by the decoder; cut here too when written as text) or a stop string,
    stripped; None if empty."""
    found = cut_at_stops(text, (*END_OF_TURN_TEXTS, *stops)).strip()
    return found or None


# ---------------------------------------------------------------------------------------
# Prompts.

PROMPT_STYLES = ("chat", "compact")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_template(path: str | os.PathLike[str]) -> str:
    """Text of a user prompt-template file (UTF-8).

    Raises:
        DataError: the file does not exist or cannot be read.
    """
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(str(p), "prompt template file not found; pass an existing text file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(str(p), f"cannot read the prompt template: {err}") from None


def builtin_template(name: str) -> str:
    """Text of a template shipped with dmpo in ``dmpo/tasks/templates/`` (e.g. ``gsm8k_chat.txt``)."""
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def render_template(template: str, fields: Mapping[str, Any]) -> str:
    """Replace ``{name}`` placeholders whose name is in ``fields``; leave every other brace alone.

    Unlike ``str.format`` this keeps LaTeX such as ``\\boxed{}`` or ``{x}`` in a user's
    template intact, so a paper's prompt can be pasted verbatim.
    """
    return _PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]) if m.group(1) in fields else m.group(0), template)


def template_placeholders(template: str) -> set[str]:
    """Names of the ``{name}`` placeholders in ``template``."""
    return set(_PLACEHOLDER.findall(template))


def chat_prompt(tokenizer: Any, content: str) -> str:
    """``content`` as one user turn with the tokenizer's chat template and a generation prompt,
    or ``content`` itself when the tokenizer is None or has no chat template."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return content
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    except Exception as err:  # noqa: BLE001 - a model's template is foreign code: jinja's sandbox, syntax ...
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise InvalidArgumentError(
            "chat_template", "(the tokenizer's)", f"it fails to render ({reason}); fix the template in the "
            "model folder, or use task option prompt_style=compact (no chat template)") from err
    return text if isinstance(text, str) else str(text)


# ---------------------------------------------------------------------------------------
# Data files and hub datasets.

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def is_local_source(source: str) -> bool:
    """True when ``source`` names a local file or folder rather than a hub dataset id."""
    if Path(source).expanduser().exists():
        return True
    lowered = source.lower()
    return (
        any(lowered.endswith(ext) for ext in LOCAL_FORMATS)
        or source.startswith((".", "/", "~"))
        or "\\" in source
        or source.count("/") > 1
    )


def _hub_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in _OFFLINE_ENV)


def _looks_unreachable(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    keys = ("offline", "connection", "connect", "resolve", "network", "timed out", "timeout", "unreachable",
            "couldn't reach", "could not reach", "max retries", "name or service", "temporary failure")
    return any(k in text for k in keys)


def load_rows(
    source: str,
    *,
    split: str,
    columns: Sequence[str],
    hub_config: str | None = None,
    cache_dir: str | None = None,
    example_columns: str = "",
    option: str = "source",
) -> list[dict[str, Any]]:
    """Rows of a dataset as plain dicts, from a local file/folder or a hub id, via ``datasets``.

    Local files (``.json``/``.jsonl``/``.parquet``/``.arrow``/``.csv``) are read whole (``split``
    only applies to hub ids and ``save_to_disk`` folders). Every failure is one
    :class:`DataError` naming the source and the fix: a missing file, a missing column
    (named), an unreachable hub (with how to pass a local file instead).

    Args:
        source: a local path or a hub dataset id such as ``openai/gsm8k``.
        split: hub split, e.g. ``train``.
        columns: columns every row must have.
        hub_config: the hub dataset's configuration name (``main`` for GSM8K).
        cache_dir: where ``datasets`` keeps its cache (None: its default).
        example_columns: how the columns look, quoted in error messages.
        option: the task option that named ``source`` (quoted in error messages).
    """
    import datasets  # heavy: imported on first use only

    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        return _load_rows(datasets, source, split=split, columns=columns, hub_config=hub_config,
                          cache_dir=cache_dir, example_columns=example_columns, option=option)
    finally:
        if bars_were_on:
            datasets.utils.enable_progress_bars()


def _load_rows(
    datasets: Any, source: str, *, split: str, columns: Sequence[str], hub_config: str | None,
    cache_dir: str | None, example_columns: str, option: str,
) -> list[dict[str, Any]]:
    want = ", ".join(columns)
    local = is_local_source(source)
    if local:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(str(path), f"no such file or folder (given as {option}); pass an existing {'/'.join(LOCAL_FORMATS)} file "
                                       f"with columns {want}")
        try:
            if path.is_dir():
                ds = datasets.load_from_disk(str(path))
                if isinstance(ds, datasets.DatasetDict):
                    if split not in ds:
                        raise DataError(str(path), f"has no split {split!r}; it has {', '.join(ds)}")
                    ds = ds[split]
            else:
                builder = LOCAL_FORMATS.get(path.suffix.lower())
                if builder is None:
                    raise DataError(str(path), f"unknown file type {path.suffix!r}; use one of {', '.join(LOCAL_FORMATS)}")
                ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - any reader failure becomes one clear DataError
            raise DataError(str(path), f"cannot read it as a dataset: {type(err).__name__}: {err}".splitlines()[0]) from None
        where = str(path)
    else:
        how = (f"pass a local file instead, {option}='path/to/file.jsonl' (a .jsonl/.json/.parquet/.arrow "
               f"file with columns {want}{'; ' + example_columns if example_columns else ''})")
        try:
            ds = datasets.load_dataset(source, hub_config, split=split, cache_dir=cache_dir)
        except Exception as err:  # noqa: BLE001
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            if _hub_offline() or _looks_unreachable(err):
                raise DataError(source, f"the Hugging Face hub is unreachable (offline mode or no network; {reason}) "
                                        f"and no cached copy exists; {how}") from None
            raise DataError(source, f"cannot load split {split!r} from the hub: {reason}; or {how}") from None
        where = f"{source} ({split})"
    present = list(ds.column_names)
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(where, f"missing column(s) {', '.join(missing)}; it has {', '.join(present) or 'no columns'}"
                               f"; expected {want}")
    return [dict(row) for row in ds.to_list()]


# ---------------------------------------------------------------------------------------
# Reward components resolved by name.


def merge_reward_weights(defaults: Mapping[str, float], overrides: Mapping[str, float | None]) -> dict[str, float]:
    """``defaults`` updated by ``overrides``: a name re-weights (or adds) a component; weight 0
    or None removes it (it is then not even computed)."""
    merged = dict(defaults)
    for name, weight in overrides.items():
        merged[name] = weight  # type: ignore[assignment]
    return {n: float(w) for n, w in merged.items() if w is not None and float(w) != 0.0}


def _accepts(factory: Any, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def resolve_reward_components(
    weights: Mapping[str, float],
    *,
    context: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    registry: Any = None,
) -> list[RewardComponent]:
    """Build the named reward components from the registry.

    Each name is looked up in ``registry`` (default: :func:`dmpo_core.registry.get_registry`)
    among the ``reward`` kind and built with ``options[name]``; context values (for example
    ``task``, the task the component scores) are passed to the factories that accept them.

    Raises:
        UnknownNameError: a name nothing registered (the message lists the available ones).
        InvalidArgumentError: a factory rejects its options or builds something not callable.
    """
    if registry is None:
        from dmpo_core.registry import get_registry

        registry = get_registry()
    context = dict(context or {})
    options = dict(options or {})
    unknown_opts = sorted(set(options) - set(weights))
    if unknown_opts:
        raise InvalidArgumentError("reward_options", unknown_opts,
                                   f"give options only for components in use: {', '.join(weights)}")
    out: list[RewardComponent] = []
    for name, weight in weights.items():
        entry = registry.get("reward", name)
        kwargs = dict(options.get(name, {}))
        for key, value in context.items():
            if key not in kwargs and _accepts(entry.factory, key):
                kwargs[key] = value
        try:
            fn = entry.factory(**kwargs)
        except TypeError as err:
            raise InvalidArgumentError(f"reward_options[{name!r}]", kwargs, f"the {name} reward rejects them: {err}") from None
        if not callable(fn):
            raise InvalidArgumentError("rewards", name, f"the {name} factory built {type(fn).__name__}, not a Reward")
        out.append(RewardComponent(name=entry.name, weight=float(weight), fn=fn))
    return out


# ---------------------------------------------------------------------------------------
# Options every built-in task shares, and the task base class.


def _check_style(_inst: Any, _attr: Any, value: str) -> None:
    if value not in PROMPT_STYLES:
        raise ValueError(f"choose one of {', '.join(PROMPT_STYLES)}")


def _check_weights(_inst: Any, _attr: Any, value: Mapping[str, Any]) -> None:
    for name, weight in value.items():
        if not isinstance(name, str) or not (weight is None or isinstance(weight, (int, float))):
            raise TypeError("map reward component names to numeric weights (0 or null disables one)")
        if isinstance(weight, bool) or (weight is not None and not math.isfinite(float(weight))):
            raise ValueError(f"weight of {name!r} must be a finite number")


def _check_reward_options(_inst: Any, _attr: Any, value: Mapping[str, Any]) -> None:
    for name, opts in value.items():
        if not isinstance(opts, Mapping):
            raise TypeError(f"options of {name!r} must be a mapping of keyword arguments")


@attrs.frozen(kw_only=True)
class TaskOptions:
    """Options of prompts and rewards that every built-in task takes (a task's config subclasses it)."""

    prompt_style: str = attrs.field(default="chat", validator=_check_style)
    """``chat``: instruction asking for ``<reasoning>``/``<answer>``, with the tokenizer's chat
    template; ``compact``: the bare problem for tiny models, the whole completion is the answer."""
    template: str | None = None
    """Path of a prompt template file with ``{question}``-style placeholders (replaces the
    built-in text of the chosen style, e.g. to reproduce a paper's exact prompt)."""
    rewards: dict[str, float | None] = attrs.field(factory=dict, validator=_check_weights)
    """Reward weights by component name, applied over the task's defaults: re-weight
    (``{"correct": 1.0}``), disable (``{"format-strict": 0}``) or add any registered
    component (``{"length-penalty": 0.1}``)."""
    reward_options: dict[str, dict[str, Any]] = attrs.field(factory=dict, validator=_check_reward_options)
    """Keyword options of reward components by name, e.g. ``{"length-penalty": {"free_chars": 400}}``."""
    compact_stop: tuple[str, ...] = ()
    """Compact style: strings that end the answer early (the decoder already cut at EOS)."""


class AnswerTask:
    """Base of tasks whose completion ends in one answer (Countdown, GSM8K, MATH500).

    Subclasses set :attr:`name`, :attr:`chat_template_file`, :attr:`compact_template` and
    implement :meth:`template_fields`, :meth:`is_correct` and
    :meth:`default_reward_weights`; data loading is their own.
    """

    name: str = ""
    chat_template_file: str = ""
    """Built-in chat template in ``dmpo/tasks/templates/``."""
    compact_template: str = ""
    """Built-in compact template (a format string with ``{name}`` placeholders)."""

    def __init__(self, config: TaskOptions, *, registry: Any = None, components: Sequence[Any] | None = None) -> None:
        """Args:
            config: the task's frozen options.
            registry: where reward components are looked up (default: the process-wide one).
            components: explicit :class:`RewardComponent` list (bypasses the registry and
                ``config.rewards``).
        """
        self.config = config
        self._registry = registry
        self._explicit = list(components) if components is not None else None
        self._components: list[RewardComponent] | None = None
        self._template = self._load_template()

    # -- what subclasses provide

    def template_fields(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        """Placeholder values of ``item`` for the prompt template."""
        raise NotImplementedError

    def is_correct(self, answer: str | None, item: Mapping[str, Any]) -> bool:
        """True when the extracted ``answer`` solves ``item``."""
        raise NotImplementedError

    def default_reward_weights(self) -> dict[str, float]:
        """Reward components and weights used when the config does not change them."""
        raise NotImplementedError

    def metric_versions(self) -> dict[str, str]:
        """Each metric key of :meth:`metric` with the name/version of how it is computed
        (:mod:`dmpo.tasks.protocols`)."""
        raise NotImplementedError

    def dataset_facts(self) -> dict[str, Any]:
        """Where the test items come from (source, split ...), for the evaluation record."""
        return {}

    def protocol_facts(self) -> dict[str, Any]:
        """Prompt style, template, answer parser, metric versions and data source of an evaluation
        (read by :func:`dmpo_core.protocols.evaluation_protocol`)."""
        cfg = self.config
        return protocols.facts(protocols.prompt_facts(cfg.prompt_style, cfg.template), self.metric_versions(),
                               self.dataset_facts())

    # -- prompts

    def _load_template(self) -> str:
        cfg = self.config
        if cfg.template is not None:
            text = read_template(cfg.template)
            known = set(self.template_fields(self.example_item()))
            if not template_placeholders(text) & known:
                raise DataError(str(cfg.template), f"the template uses none of the placeholders "
                                                   f"{', '.join('{' + k + '}' for k in sorted(known))}")
            return text
        if cfg.prompt_style == "compact":
            return self.compact_template
        return builtin_template(self.chat_template_file)

    def example_item(self) -> Mapping[str, Any]:
        """A representative item (used to check a user template's placeholders)."""
        raise NotImplementedError

    def prompt(self, item: Mapping[str, Any], tokenizer: Any) -> str:
        """The prompt of ``item``: the template filled in; in chat style, wrapped in the
        tokenizer's chat template when it has one."""
        text = render_template(self._template, self.template_fields(item))
        if self.config.prompt_style == "chat":
            return chat_prompt(tokenizer, text)
        return text

    # -- answers and scores

    def extract_answer(self, completion: str) -> str | None:
        """The answer of ``completion`` in the task's prompt style (None when there is none)."""
        if self.config.prompt_style == "compact":
            return extract_compact_answer(completion, self.config.compact_stop)
        return extract_tagged_answer(completion)

    def completion_prefill(self, item: Mapping[str, Any], tokenizer: Any, gen_length: int,
                           mask_id: int) -> list[int] | None:
        """None: an answer task's completion is decoded from all masks."""
        return None

    def relevant_positions(self, item: Mapping[str, Any], length: int) -> list[bool] | None:
        """None: the reward may read any position of the completion."""
        return None

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        """Training value of the ``correct`` reward component, in [0, 1]: 1.0 when correct."""
        return 1.0 if self._safe_correct(completion, item) else 0.0

    def _safe_correct(self, completion: str, item: Mapping[str, Any]) -> bool:
        try:
            return bool(self.is_correct(self.extract_answer(completion), item))
        except Exception:  # noqa: BLE001 - a checker bug on one odd completion counts as wrong
            return False

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        """Evaluation score in {0, 1}: 1.0 when the answer is correct."""
        return 1.0 if self._safe_correct(completion, item) else 0.0

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """``accuracy`` (mean score) and ``answered`` (share of completions with an answer)."""
        n = len(completions)
        if n == 0:
            return {"accuracy": float("nan"), "answered": float("nan")}
        scores = [self.score(c, it) for c, it in zip(completions, items)]
        answered = sum(self.extract_answer(c) is not None for c in completions)
        return {"accuracy": sum(scores) / n, "answered": answered / n}

    # -- rewards

    def reward_weights(self) -> dict[str, float]:
        """Component name -> weight after applying ``config.rewards`` to the defaults."""
        return merge_reward_weights(self.default_reward_weights(), self.config.rewards)

    def reward_components(self) -> list[RewardComponent]:
        """The weighted components of the training reward, resolved by name (built once)."""
        if self._explicit is not None:
            return list(self._explicit)
        if self._components is None:
            self._components = resolve_reward_components(
                self.reward_weights(), context={"task": self}, options=self.config.reward_options,
                registry=self._registry,
            )
        return list(self._components)


def _same_question(text: str) -> str:
    return " ".join(str(text).split()).lower()


def without_held_out(
    items: list[dict[str, Any]], held_out: Sequence[Mapping[str, Any]], limit: int | None
) -> list[dict[str, Any]]:
    """Training items whose question (whitespace and case folded) is not in ``held_out``, cut to ``limit``."""
    test = {_same_question(it["question"]) for it in held_out}
    kept = [it for it in items if _same_question(it["question"]) not in test]
    return kept if limit is None else kept[:limit]
