"""The one plain-text table printer (on ``tabulate``): verdicts, the mirror's status, the runbook, benchmarks.

``table(headers, rows)`` lays out columns two spaces apart, as every drdrill table always looked;
``align`` says how: ``"left"`` (every column), ``"right"`` (every column, for figures) or
``"first-left"`` (the first column left, the figures after it right). ``rule=True`` draws a line of
dashes under the header; ``title`` goes above it. Cells are shown as given (``str``), never
re-formatted as numbers; trailing spaces are trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tabulate import tabulate

__all__ = ["table"]

Align = Literal["left", "right", "first-left"]


def table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], *, align: Align = "left",
          rule: bool = False, title: str = "") -> str:  # fmt: skip
    """``rows`` under ``headers`` as aligned plain text (see the module docstring)."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    if rule:  # dashes as wide as each column, under the header
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        cells.insert(1, ["-" * w for w in widths])
    colalign = ("left", *("right",) * (len(headers) - 1)) if align == "first-left" else (align,) * len(headers)
    # the header is the first row: tabulate's own header handling pads header columns by 2 more
    text = tabulate(cells, tablefmt="plain", disable_numparse=True, colalign=colalign)
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(([title] if title else []) + lines)
