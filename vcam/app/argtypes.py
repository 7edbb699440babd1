"""argparse value types shared by the ``vcam`` subcommands: each says what it expected."""

from __future__ import annotations

import argparse


def _ranged(cast, what: str, bounds: str, lo, hi):
    """A parser of ``what`` (made by ``cast``) within ``lo..hi``; errors name ``bounds``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text}")
        return value

    return parse


def number_range(lo: float, hi: float):
    """A parser of numbers ``lo..hi``."""
    return _ranged(float, "a number", f"{lo:g}..{hi:g}", lo, hi)


unit = number_range(0.0, 1.0)
"""A number 0..1 (an expression's intensity)."""

motion_scale = number_range(0.0, 2.0)
"""How much the head moves, 0..2 (``[motion] scale``)."""

offset_ms = _ranged(float, "a number of milliseconds", "-500..500", -500.0, 500.0)
"""The virtual microphone's delay trim, ms."""


def int_range(lo: int, hi: int):
    """A parser of integers ``lo..hi``."""
    return _ranged(int, "an integer", f"{lo}..{hi}", lo, hi)
