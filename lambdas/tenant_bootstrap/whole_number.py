"""Whole numbers as CloudFormation properties and command-line arguments write them."""

from __future__ import annotations

import re

PLAIN_DIGITS = re.compile(r"[0-9]+")


def whole_number(raw: str) -> int | None:
    """`raw` as a whole number when it is written in plain ASCII digits, else None.

    int() takes more than that: " 5 ", "+3", "1_6" (16) and other scripts' digits ("٣", 3),
    and str.isdigit() passes "²", which int() then refuses. None of those is how the
    construct or an operator writes a number, so each is refused rather than read as one.
    """
    return int(raw) if PLAIN_DIGITS.fullmatch(raw) else None


def counted(raw: str, high: int | None = None) -> int | None:
    """`raw` as a whole number from 1 (to `high`, if given), else None."""
    value = whole_number(raw)
    if value is None or value < 1 or (high is not None and value > high):
        return None
    return value


def span(high: int | None) -> str:
    """The range counted() takes, as a message says it."""
    return "of at least 1" if high is None else f"from 1 to {high}"
