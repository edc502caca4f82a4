"""How numbers are written in the app: scores to 3 significant digits, ordinals, "–" for missing.

One place for it, so every page, table and caption writes the same thing: `sig3(0.0123456)` is
"0.0123", `ordinal(11)` is "11th", a missing or non-finite value is `MISSING` ("–", never
"None" or "nan"); `table_value` is the formatter of the pages' tables (metrics to 3 decimals).
"""
from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def missing(value: Any) -> bool:
    """True for None, NaN, ±inf and pandas' NA (anything a table cannot show as a number)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return not math.isfinite(float(value))
    try:  # numpy scalars, pandas.NA
        return bool(value != value) or (hasattr(value, "dtype") and not math.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def sig3(value: Any) -> str:
    """A number to 3 significant digits, without an exponent between 1e-4 and 1e6 ("0.0123", "1230",
    "-4.57", "1.23e+07"); MISSING for a missing value."""
    if missing(value):
        return MISSING
    v = float(value)
    if v == 0:
        return "0"
    text = f"{v:.3g}"
    if "e" in text and 1e-4 <= abs(v) < 1e6:  # .3g switches to exponents from 1000 on: 1234 -> "1230"
        digits = 2 - int(math.floor(math.log10(abs(v))))
        text = f"{round(v, digits):.{max(0, digits)}f}"
    return text


def ordinal(n: Any) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 4 -> '4th', 11 -> '11th', 12 -> '12th', 13 -> '13th', 21 -> '21st'."""
    if missing(n):
        return MISSING
    k = int(round(float(n)))
    if 10 <= abs(k) % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(abs(k) % 10, "th")
    return f"{k}{suffix}"


def percentile_rank_text(p: Any, of: str) -> str:
    """'90th percentile of normal' (an ordinal of the rounded percentile), MISSING without one."""
    return MISSING if missing(p) else f"{ordinal(p)} percentile of {of}"


def table_value(value: Any, decimals: int = 3) -> str:
    """A table cell: integers as they are, other numbers to `decimals` decimals (3 significant digits
    where that would show nothing or too much), text unchanged, MISSING for a missing value."""
    if missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return str(int(value))
    if isinstance(value, float) or hasattr(value, "dtype"):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return str(value)
        if v != 0 and not (10 ** -decimals <= abs(v) < 10 ** 4):
            return sig3(v)
        return f"{v:.{decimals}f}"
    return str(value)
