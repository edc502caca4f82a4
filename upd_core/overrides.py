"""`--set key=value` overrides of a method's dataclass config, typed by the config's fields.

One parser for every place that takes overrides: the CLI's `train --set`, `derived derive --set`
and the campaign's recipes (which compare them with a trained model's config).
"""
from __future__ import annotations

import dataclasses

from .errors import UPDError


def _parse_value(field: dataclasses.Field, text: str):
    """Convert a --set value to the config field's type (int, float, bool, str, tuple of int)."""
    default = field.default
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple) or (field.default_factory is not dataclasses.MISSING):  # type: ignore[misc]
        return tuple(int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in text.split(","))
    return text


def method_config(method: str, overrides: list[str]):
    """The method's paper-default config with `key=value` overrides applied.

    An unknown method, key or value is a UPDError (one line, exit 2), never a traceback."""
    from .registry import get_method

    try:
        cls = get_method(method)
    except ValueError as exc:
        raise UPDError(f"--method: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    kwargs = {}
    for item in overrides:
        key, sep, val = item.partition("=")
        if not sep or key not in fields:
            raise UPDError(f"--set {item!r}: expected key=value with key in {sorted(fields)}")
        try:
            kwargs[key] = _parse_value(fields[key], val)
        except ValueError:
            raise UPDError(f"--set {item!r}: {val!r} is not a valid value for {key} "
                           f"(default {fields[key].default!r})") from None
    try:
        return cls.Config(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UPDError(f"--set: {exc}") from None

