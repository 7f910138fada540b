"""The rows as a terminal table: one line per gate, upstream x local = downstream."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jaxprop.explainer import fmt
from jaxprop.gate import is_constant


def _named(names, values) -> str:
    return "\n".join(f"{n} = {fmt.value(v)}" if n != fmt.value(v) else n
                     for n, v in zip(names, values, strict=False))


def _outputs(row) -> str:
    outs = row.outputs if isinstance(row.outputs, tuple) else (row.outputs,)
    if len(outs) != len(row.output_names):
        outs = (row.outputs,) * len(row.output_names)
    return _named(row.output_names, outs)


def _per_input(names, values, consts) -> str:
    if values is None:
        return "-"
    return "\n".join(f"{n}: {fmt.value(v)}" for n, v, c in zip(names, values, consts, strict=False)
                     if not c)


def build(trace) -> Table:
    """Returns the ``rich`` table of ``trace``'s rows."""
    reverse = trace.mode == "reverse"
    caption = None
    if not reverse and trace.basis:
        caption = ("forward mode pushed one basis tangent per input element, in the order "
                   + ", ".join(trace.differentiated)
                   + ": each tangent lists one entry per direction")
    table = Table(title=trace.title or f"jaxprop explain ({trace.mode} mode)",
                  caption=caption, show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("gate")
    table.add_column("pattern")
    table.add_column("inputs", style="green")
    table.add_column("output", style="green")
    if reverse:
        table.add_column("upstream", style="red")
        table.add_column("local gradient")
        table.add_column("downstream", style="red")
    else:
        table.add_column("tangents in", style="blue")
        table.add_column("JVP rule")
        table.add_column("tangent out", style="blue")
    for row in trace.rows:
        pattern = row.pattern + (f"\n({row.detail})" if row.detail else "")
        inputs = _named(row.input_names, row.inputs)
        consts = [is_constant(x) for x in row.inputs]
        if reverse:
            up = fmt.value(row.upstream)
            down = _per_input(row.input_names, row.downstream, consts)
        else:
            up = _per_input(row.input_names, row.upstream, consts)
            down = fmt.value(row.downstream)
        local = row.local.replace("; ", "\n")  # one input per line
        cells = (str(row.step), row.gate, pattern, inputs, _outputs(row), up, local, down)
        table.add_row(*(Text(c) for c in cells))  # "[x > 0]" is text, not rich markup
    return table


def to_text(trace, width: int = 160) -> str:
    """The table as plain text, for ``str(trace)`` and for logs."""
    console = Console(file=io.StringIO(), width=width, color_system=None, force_jupyter=False)
    console.print(build(trace))
    return console.file.getvalue()


def to_html(trace, width: int = 160) -> str:
    """The table as HTML with inline styles, for Jupyter."""
    console = Console(file=io.StringIO(), width=width, record=True, force_jupyter=False)
    console.print(build(trace))
    return console.export_html(inline_styles=True, code_format="<pre style=\"font-family:"
                               "monospace;line-height:1.2\">{code}</pre>")
