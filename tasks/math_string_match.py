"""The papers' MATH metric: two answers match when their normalised strings are equal.

The MATH benchmark (Hendrycks et al., 2021) introduced this comparison, and the d1 and DMPO
papers score MATH500 with it. It is stricter than math-verify (which parses both answers and
compares values): ``0.5`` and ``\\frac12`` match here, but ``\\frac{6}{8}`` and
``\\frac{3}{4}``, or ``(1,2)`` and ``(1, 2]``, only by value or not at all.

The normalisation, in order (our reading of the benchmark's rules, written for this project):

1. drop line breaks and ``\\!``; ``\\\\`` becomes ``\\``; ``tfrac`` and ``dfrac`` become ``frac``;
   drop ``\\left``, ``\\right``, degree marks (``^{\\circ}``, ``^\\circ``) and ``\\$``;
2. a unit on the right (text after the one ``\\text{ ``) is dropped;
3. drop ``\\%``; ``" ."`` and ``"{."`` get a leading zero, and so does a leading ``.``;
4. ``k = 5`` (one ``=``, at most two characters before it) becomes ``5``;
5. ``\\sqrt3`` becomes ``\\sqrt{3}``; spaces are dropped;
6. ``\\frac12`` and ``\\frac1b`` gain braces (``\\frac{1}{2}``); ``0.5`` becomes ``\\frac{1}{2}``;
   ``a/b`` of two integers becomes ``\\frac{a}{b}``.

Where a rule cannot apply (two ``\\text{ `` units, a ``\\frac`` or ``\\sqrt`` with nothing after
it, one slash between things that are not integers, as in ``\\pi/2``), the benchmark compares
the raw strings instead, and so does :func:`strings_match`.
"""

from __future__ import annotations

_UNIT = "\\text{ "


class _CannotNormalise(ValueError):
    """A rule met a shape it cannot handle: the raw strings are compared instead."""


def _drop_units(text: str) -> str:
    count = text.count(_UNIT)
    if count == 0:
        return text
    if count > 1:
        raise _CannotNormalise("more than one unit")
    return text[: text.index(_UNIT)]


def _leading_zeros(text: str) -> str:
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    return "0" + text if text.startswith(".") else text


def _drop_short_lhs(text: str) -> str:
    parts = text.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        return parts[1]
    return text


def _brace_sqrt(text: str) -> str:
    head, *rest = text.split("\\sqrt")
    out = [head]
    for part in rest:
        if not part:
            raise _CannotNormalise("\\sqrt with nothing after it")
        out.append("\\sqrt" + (part if part[0] == "{" else "{" + part[0] + "}" + part[1:]))
    return "".join(out)


def _brace_fracs(text: str) -> str:
    head, *rest = text.split("\\frac")
    out = [head]
    for part in rest:
        if not part:
            raise _CannotNormalise("\\frac with nothing after it")
        if part[0] == "{":
            out.append("\\frac" + part)
            continue
        if len(part) < 2:
            return text  # "\frac1": left as written
        numerator, second, tail = part[0], part[1], part[2:]
        if second == "{":
            out.append("\\frac{" + numerator + "}" + second + tail)
        else:
            out.append("\\frac{" + numerator + "}{" + second + "}" + tail)
    return "".join(out)


def _slash_to_frac(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        raise _CannotNormalise("a slash between non-integers") from None
    return "\\frac{" + str(a) + "}{" + str(b) + "}" if f"{a}/{b}" == text else text


def normalise(text: str) -> str:
    """``text`` after the benchmark's normalisation (see the module docstring).

    Raises:
        ValueError: a rule cannot apply (the caller compares raw strings then).
    """
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", "")):
        text = text.replace(old, new)
    text = _drop_units(text)
    text = text.replace("\\%", "")
    text = _leading_zeros(text)
    if not text:
        return text
    text = _drop_short_lhs(text)
    text = _brace_sqrt(text)
    text = text.replace(" ", "")
    text = _brace_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _slash_to_frac(text)


def strings_match(reference: str | None, answer: str | None) -> bool:
    """True when both answers normalise to the same string (raw equality where one cannot be
    normalised); False when either is missing."""
    if reference is None or answer is None:
        return False
    try:
        return normalise(reference) == normalise(answer)
    except ValueError:
        return reference == answer
