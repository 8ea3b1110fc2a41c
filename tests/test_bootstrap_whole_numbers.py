"""How the bootstrap reads whole numbers from CloudFormation properties and command-line
arguments (lambdas/tenant_bootstrap/whole_number.py): plain ASCII digits only, counted from 1
to an optional ceiling, both edges included. test_bootstrap_handler.py and
test_tenant_bootstrap.py show the messages each caller builds from them.
"""

from __future__ import annotations

import pytest

from lambdas.tenant_bootstrap.whole_number import counted, span, whole_number


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("7", 7), ("0042", 42),
                                            ("123456789012345678901234567890",
                                             123456789012345678901234567890)])
def test_plain_digits_are_a_whole_number(raw: str, value: int) -> None:
    assert whole_number(raw) == value


@pytest.mark.parametrize("raw", [
    "", " 5", "5 ", "5\n", "+3", "-3", "1_6", "1e3", "5.0", "0x10", "٣", "²", "５"])
def test_anything_int_would_stretch_to_is_not(raw: str) -> None:
    assert whole_number(raw) is None


@pytest.mark.parametrize(("raw", "high", "value"), [
    ("1", None, 1), ("0", None, None), ("99999", None, 99999),
    ("1", 5, 1), ("5", 5, 5), ("6", 5, None), ("0", 5, None), ("1", 1, 1), ("2", 1, None),
    ("x", 5, None)])
def test_counted_takes_1_to_its_ceiling_both_included(raw: str, high: int | None,
                                                      value: int | None) -> None:
    assert counted(raw, high) == value


def test_the_range_is_said_as_counted_takes_it() -> None:
    assert span(None) == "of at least 1"
    assert span(5) == "from 1 to 5"
