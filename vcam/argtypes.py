"""argparse value types shared by the ``vcam`` subcommands: each says what it expected."""

from __future__ import annotations

import argparse


def unit(text: str) -> float:
    """A number 0..1 (an expression's intensity)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number 0..1, got {text}")
    return value


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
