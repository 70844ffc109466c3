"""CSV exports of the admin panel: a cell a spreadsheet would run as a formula is text."""

from __future__ import annotations

from typing import Any

import pytest

from billing.admin.panel.base import spreadsheet_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ('=HYPERLINK("http://evil.test")', '\'=HYPERLINK("http://evil.test")'),
        ("SPRING25", "SPRING25"),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("'quoted", "'quoted"),
        ("", ""),
        (None, ""),
        (49900, "49900"),
    ],
)
def test_formula_cells_get_a_leading_quote(value: Any, cell: str) -> None:
    assert spreadsheet_cell(value) == cell
