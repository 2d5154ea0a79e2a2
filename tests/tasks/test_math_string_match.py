"""The papers' MATH string match: each normalisation rule, the raw fallback, and where it
differs from math-verify (which compares values)."""

from __future__ import annotations

import pytest
from dmpo.tasks.math_string_match import normalise, strings_match


@pytest.mark.parametrize(("text", "normal"), [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),  # tfrac/dfrac are frac
    ("\\left( 1, 2 \\right)", "(1,2)"),  # \left, \right and spaces go
    ("90^\\circ", "90"), ("90^{\\circ}", "90"),  # degree marks go
    ("\\$5", "5"), ("10\\%", "10"),  # dollar and percent signs go
    ("5 \\text{ cm}", "5"),  # one unit on the right goes
    (".5", "\\frac{1}{2}"), ("0.5", "\\frac{1}{2}"),  # a leading zero is added; 0.5 is a half
    ("x = 3", "3"), ("xy=3", "3"), ("abc = 3", "abc=3"),  # a short left side goes, a long one stays
    ("\\sqrt3", "\\sqrt{3}"), ("2\\sqrt{3}", "2\\sqrt{3}"),
    ("\\frac12", "\\frac{1}{2}"), ("\\frac1{72}", "\\frac{1}{72}"), ("\\frac{72}1", "\\frac{72}1"),
    ("3/4", "\\frac{3}{4}"), ("03/4", "03/4"),  # only a/b written as plain integers
    ("line\nbreak", "linebreak"),
])
def test_each_rule(text, normal):
    assert normalise(text) == normal


def test_shapes_a_rule_cannot_handle_compare_raw_strings():
    for text in ("\\pi/2", "5 \\text{ m} 2 \\text{ s}", "2\\sqrt", "\\frac"):
        with pytest.raises(ValueError):
            normalise(text)
    assert strings_match("\\pi/2", "\\pi/2")  # equal raw strings still match
    assert not strings_match("\\pi/2", " \\pi/2")  # one space apart: raw strings differ


def test_matches_by_string_not_by_value():
    assert strings_match("\\frac{1}{2}", "0.5") and strings_match("16\\sqrt{3}", "16 \\sqrt3")
    assert not strings_match("\\frac{3}{4}", "\\frac{6}{8}")  # equal values, different strings
    assert not strings_match("\\frac{3}{4}", "0.75")
    assert not strings_match("5", None) and not strings_match(None, None)
