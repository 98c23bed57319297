"""The checks every option section runs: one option per check, the message naming it and its value.

`autolora run --lr-beta -1` says `lr_beta: expected a positive finite number, got -1.0`. Imports only
autolora.errors and autolora.options, so every option section (and the search step) may use it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from autolora.errors import InputError
from autolora.options import one_of


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(name: str, value: object, low: int, high: int | None = None, *, none: bool = False) -> None:
    """An integer in low..high (high None: no upper bound), or None where `none`.

    Args:
        name: the option as the config spells it ("k", "decoding.num_beams").
        value: its value.
        low: the least value allowed.
        high: the largest value allowed; None: no bound.
        none: whether None is allowed.

    Raises:
        InputError: `name: expected an integer >= low, got value` (or `in low..high`).
    """
    if value is None and none:
        return
    if _is_int(value) and value >= low and (high is None or value <= high):
        return
    want = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    raise InputError(name, f"expected {'none or ' if none else ''}{want}, got {value!r}")


def check_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    none: bool = False,
) -> None:
    """A finite number within the bounds (None: unbounded on that side), or None where `none`.

    NaN and inf are refused everywhere: no option means anything by them.

    Args:
        name: the option as the config spells it.
        value: its value.
        low: the lower bound; None: none.
        high: the upper bound; None: none.
        low_open: the lower bound itself is refused (low 0, low_open: positive).
        high_open: the upper bound itself is refused.
        none: whether None is allowed.

    Raises:
        InputError: `name: expected a positive finite number, got -1.0` and the like.
    """
    if value is None and none:
        return
    ok = _is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low == 0 and low_open and high is None:
        want = "a positive finite number"
    elif high is None:
        want = "a finite number" + ("" if low is None else f" {'>' if low_open else '>='} {low:g}")
    elif low is None:
        want = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        want = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise InputError(name, f"expected {'none or ' if none else ''}{want}, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """One of `choices`.

    Raises:
        InputError: `name: expected a, b or c, got 'd'`.
    """
    if value not in choices:
        raise InputError(name, f"expected {one_of(choices)}, got {value!r}")


def check_bool(name: str, value: object) -> None:
    """True or False (a config file's `yes` is YAML's True; `maybe` is not a switch).

    Raises:
        InputError: `name: expected true or false, got 'maybe'`.
    """
    if not isinstance(value, bool):
        raise InputError(name, f"expected true or false, got {value!r}")


def check_json_file(name: str, value: object, *, none: bool = True) -> None:
    """None (where `none`), or the path of a file holding a JSON object.

    Raises:
        InputError: naming the option and the file: not found, a folder, not JSON, not an object.
    """
    if value is None and none:
        return
    if not isinstance(value, str) or not value:
        raise InputError(name, f"expected the path of a JSON file, got {value!r}")
    path = Path(value)
    if not path.is_file():
        raise InputError(name, "is a folder, not a file" if path.is_dir() else "file not found", path=value)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(name, f"not a JSON file: {e}", path=value) from None
    if not isinstance(content, dict):
        raise InputError(name, f"expected a JSON object, got a {type(content).__name__}", path=value)


def check_text(name: str, value: object, *, none: bool = False) -> None:
    """A non-empty string, or None where `none`.

    Raises:
        InputError: `name: expected a non-empty string, got ''`.
    """
    if (value is None and none) or (isinstance(value, str) and value):
        return
    raise InputError(name, f"expected {'none or ' if none else ''}a non-empty string, got {value!r}")


def check_names(name: str, value: object) -> None:
    """None, or a list of non-empty strings.

    Raises:
        InputError: `name: expected none or a list of names, got ...`.
    """
    if value is None or (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
        return
    raise InputError(name, f"expected none or a list of names, got {value!r}")
