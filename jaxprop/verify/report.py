"""What ``jaxprop.check`` found: one row per check, a table for the terminal and for Jupyter.

The terminal table is drawn with ``rich``, in the style of ``jaxprop explain``'s: each row's
note is wrapped in its own column, so a report reads at the terminal's width.
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["CheckRow", "CheckReport", "PASS", "FAIL", "ERROR", "NOT_APPLICABLE"]

PASS, FAIL, ERROR, NOT_APPLICABLE = "pass", "FAIL", "error", "n/a"


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """One check of the battery.

    Attributes:
      key: the check's short name (``"fd_vjp"``), see ``jaxprop.verify.CHECKS``.
      title: what it checks, in words (``"VJP rule against central finite differences"``).
      status: ``"pass"``, ``"FAIL"``, ``"error"`` (the check could not run: a rule raised) or
        ``"n/a"`` (it does not apply, and ``note`` says why).
      abs_error: |got - expected| at the worst element (None where no number applies).
      rel_error: abs_error / |expected| there.
      where: the worst element, e.g. ``x[1, 2]`` (an input's element for a VJP rule, an
        output's for a JVP rule).
      got: our rule's value there. expected: the reference's value there.
      tolerance: the bound the error was held to.
      note: what was compared, or the reason for "n/a" and "error".
      directions: the random directions the check used, by name (``u``: the cotangent,
        ``v[x]``: the tangent of input x), so anyone can redo the arithmetic.
    """

    key: str
    title: str
    status: str
    abs_error: float | None = None
    rel_error: float | None = None
    where: str = ""
    got: float | None = None
    expected: float | None = None
    tolerance: str = ""
    note: str = ""
    directions: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in (PASS, NOT_APPLICABLE)


_STATUS_STYLE = {PASS: "green", NOT_APPLICABLE: "dim"}  # FAIL and error: bold red


def _number(x: float | None) -> str:
    if x is None:
        return ""
    if math.isinf(x) or math.isnan(x):
        return str(x)
    return f"{x:.2e}" if x else "0"


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """The battery's verdict on one gate or function.

    Attributes:
      target: what was checked (``"gate 'tanh'"``, ``"function f"``).
      inputs: the names of the differentiated inputs.
      rows: one :class:`CheckRow` per check, in the order they ran.
    """

    target: str
    inputs: tuple[str, ...]
    rows: tuple[CheckRow, ...]

    @property
    def ok(self) -> bool:
        """True when every check passed or does not apply."""
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> tuple[CheckRow, ...]:
        """The rows that failed or could not run."""
        return tuple(r for r in self.rows if not r.ok)

    def __getitem__(self, key: str) -> CheckRow:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"no check {key!r}; the checks are {[r.key for r in self.rows]}")

    def summary(self) -> str:
        """One line: ``gate 'tanh': 11 of 12 checks pass; FAIL: fd_vjp``."""
        counted = [r for r in self.rows if r.status != NOT_APPLICABLE]
        passed = sum(r.status == PASS for r in counted)
        line = f"{self.target}: {passed} of {len(counted)} checks pass"
        if self.failed:
            line += "; " + ", ".join(f"{r.status}: {r.key}" for r in self.failed)
        return line

    def _cells(self) -> list[list[str]]:
        return [[r.key, r.status, _number(r.abs_error), _number(r.rel_error), r.where,
                 r.note] for r in self.rows]

    def table(self) -> Table:
        """The ``rich`` table of the rows: the status in colour, the notes wrapped."""
        table = Table(title=f"jaxprop.check of {self.target} "
                            f"(inputs: {', '.join(self.inputs)})", title_justify="left",
                      show_lines=True, expand=True)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("abs error", justify="right", no_wrap=True)
        table.add_column("rel error", justify="right", no_wrap=True)
        table.add_column("worst at", max_width=30)
        table.add_column("note", ratio=1)
        for row, cells in zip(self.rows, self._cells()):
            style = _STATUS_STYLE.get(row.status, "bold red")
            table.add_row(Text(cells[0]), Text(cells[1], style=style),
                          *(Text(c) for c in cells[2:]))  # "[x > 0]" is text, not markup
        return table

    def text(self, width: int = 120) -> str:
        """The table as plain text ``width`` columns wide, then the summary line."""
        console = Console(file=io.StringIO(), width=width, color_system=None,
                          force_jupyter=False)
        console.print(self.table())
        return console.file.getvalue() + self.summary()

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<CheckReport {self.summary()}>"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in
                       ("check", "status", "abs error", "rel error", "worst at", "note"))
        body = []
        for row, cells in zip(self.rows, self._cells()):
            color = {PASS: "#1a7f37", NOT_APPLICABLE: "#666"}.get(row.status, "#cf222e")
            tds = [f"<td title='{html.escape(row.title)}'>{html.escape(cells[0])}</td>",
                   f"<td style='color:{color};font-weight:bold'>{cells[1]}</td>"]
            tds += [f"<td>{html.escape(c)}</td>" for c in cells[2:]]
            body.append("<tr>" + "".join(tds) + "</tr>")
        return (f"<p><b>jaxprop.check</b> of {html.escape(self.target)}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                f"<p>{html.escape(self.summary())}</p>")

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))
