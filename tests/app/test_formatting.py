"""upd_core.app.formatting: 3 significant digits, ordinals, '–' for missing values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from upd_core.app import formatting as f


def test_sig3():
    assert [f.sig3(v) for v in (0.0123456, 1234.5, -4.5678, 0.72, 100, 0)] == ["0.0123", "1230", "-4.57", "0.72",
                                                                                "100", "0"]
    assert f.sig3(1.5e7) == "1.5e+07" and f.sig3(3e-6) == "3e-06" and f.sig3(np.float32(2.5)) == "2.5"
    for missing in (None, math.nan, math.inf, np.float64("nan"), pd.NA):
        assert f.sig3(missing) == f.MISSING == "–"


def test_ordinals():
    assert [f.ordinal(n) for n in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th"]
    assert f.ordinal(1.4) == "1st" and f.ordinal(None) == "–"
    assert f.percentile_rank_text(25.0, "normal") == "25th percentile of normal"


def test_table_values():
    assert f.table_value(None) == f.table_value(pd.NA) == f.table_value(math.nan) == "–"
    assert f.table_value(np.int64(5)) == "5" and f.table_value(0.5) == "0.500" and f.table_value("x") == "x"
    assert f.table_value(1e-5) == "1e-05" and f.table_value(True) == "yes"
