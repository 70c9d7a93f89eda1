"""Strict JSON: non-finite numbers become null with the reason beside them; NaN tokens are refused."""

from __future__ import annotations

import json
import math

import pytest

from inductionlab import jsonio


def test_non_finite_numbers_become_null_with_their_reason():
    value = {"loss": math.nan, "gap": -math.inf, "ok": 1.5, "curve": [1.0, math.inf, [math.nan, 2.0]],
             "nested": {"kl": math.inf}, "text": "nan", "none": None}
    out = json.loads(jsonio.dumps(value))
    assert out == {"loss": None, "loss_nonfinite": "nan", "gap": None, "gap_nonfinite": "-inf", "ok": 1.5,
                   "curve": [1.0, None, [None, 2.0]], "curve_nonfinite": {"1": "inf", "2.0": "nan"},
                   "nested": {"kl": None, "kl_nonfinite": "inf"}, "text": "nan", "none": None}


def test_finite_values_pass_unchanged():
    value = {"a": [1, 2.5, {"b": [0.0, -3]}], "c": True, "d": "x"}
    assert json.loads(jsonio.dumps(value)) == value
    assert jsonio.to_strict([math.nan, 1]) == [None, 1]


def test_loads_refuses_what_python_would_accept():
    for text in ('{"a": NaN}', '[Infinity]', '{"b": -Infinity}'):
        json.loads(text)  # Python's parser takes it
        with pytest.raises(ValueError, match="not strict JSON"):
            jsonio.loads(text)
    assert jsonio.loads('{"a": null, "a_nonfinite": "nan"}') == {"a": None, "a_nonfinite": "nan"}
