"""argparse value types shared by the ``vcam`` subcommands: each says what it expected."""

from __future__ import annotations

import argparse


def number_range(lo: float, hi: float):
    """A parser of numbers ``lo..hi``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {lo:g}..{hi:g}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a number {lo:g}..{hi:g}, got {text}")
        return value

    return parse


unit = number_range(0.0, 1.0)
"""A number 0..1 (an expression's intensity)."""


def int_range(lo: int, hi: int):
    """A parser of integers ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {lo}..{hi}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer {lo}..{hi}, got {text}")
        return value

    return parse
