"""The circuit drawn like the slides, with matplotlib only (SVG and PNG, no graphviz).

Inputs sit on the left, the output on the right, gates in between as boxes labelled with
their symbol, their step number in the table, and their pattern. Every wire carries its
forward value above it (green) and the gradient flowing back along it below it (red); in
forward mode the tangent (blue) replaces the gradient.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, PathPatch
from matplotlib.path import Path as MplPath

from jaxprop.explainer import fmt
from jaxprop.explainer.layout import Node, layout, text_width

FONT = "DejaVu Sans Mono"
LABEL_SIZE = 8.5
TITLE_SIZE = 11.0
SYMBOL_SIZE = 10.5
PATTERN_SIZE = 7.5
PORT_GAP = 30.0
ROW_GAP = 18.0
CURVE_W = 40.0
MARGIN = 16.0
TITLE_H = 40.0

VALUE_COLOR = "#1a7f37"
GRAD_COLOR = "#c62828"
TANGENT_COLOR = "#1f5fbf"
WIRE_COLOR = "#555555"
SUFFIXES = (".svg", ".png")


def render(trace, path: Path) -> Path:
    """Writes the circuit of ``trace`` to ``path`` (``.svg`` or ``.png``)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"render: cannot write {path.name!r}; expected a path ending in "
                         f"one of {SUFFIXES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".svg":
        path.write_text(svg(trace))
    else:
        fig = draw(trace)
        fig.savefig(path, format="png", dpi=150, metadata={"Software": None})
    return path


def svg(trace) -> str:
    """The circuit of ``trace`` as SVG text (what ``render`` writes to a ``.svg`` file)."""
    fig = draw(trace)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "jaxprop"}):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    # text stays text; a viewer without DejaVu Sans Mono falls back to any monospace
    return buffer.getvalue().replace(f"font-family: '{FONT}'",
                                     f"font-family: '{FONT}', monospace")


def _gate_rows(trace) -> dict[str, object]:
    return {f"gate:{row.step}": row for row in trace.rows}


def draw(trace) -> Figure:
    """Returns the matplotlib figure of the circuit."""
    rows = _gate_rows(trace)
    reverse = trace.mode == "reverse"
    grad_color = GRAD_COLOR if reverse else TANGENT_COLOR

    # Ports: a gate's wired inputs, in slot order (constants are part of its symbol).
    wired: dict[str, list[int]] = {}
    for e in trace.edges:
        wired.setdefault(e.dst, [])
        if e.slot not in wired[e.dst]:
            wired[e.dst].append(e.slot)
    port_of = {k: {s: i for i, s in enumerate(sorted(v))} for k, v in wired.items()}

    nodes: dict[str, Node] = {}
    box_w: dict[str, float] = {}
    for e in trace.edges:
        for key in (e.src, e.dst):
            if key in nodes:
                continue
            n_ports = max(1, len(wired.get(key, [])))
            if key.startswith("gate:"):
                row = rows[key]
                bw = max(40.0, text_width(row.symbol, SYMBOL_SIZE) + 16)
                bh = max(28.0, (n_ports - 1) * PORT_GAP + 20)
                box_w[key] = bw
                width = max(bw, text_width(row.pattern, PATTERN_SIZE) + 4)
                nodes[key] = Node(key, "gate", width, bh + 2 * (PATTERN_SIZE + 6), n_ports)
            elif key.startswith("in:"):
                name = key[3:]
                nodes[key] = Node(key, "in", text_width(name, SYMBOL_SIZE) + 8, PORT_GAP)
            else:
                nodes[key] = Node(key, "out", text_width("out", SYMBOL_SIZE) + 8, PORT_GAP)
    edges = [(e.src, e.dst, port_of[e.dst][e.slot]) for e in trace.edges]
    labels = [(fmt.short(e.value), fmt.short(e.grad)) for e in trace.edges]
    label_w = [max(text_width(v, LABEL_SIZE), text_width(g, LABEL_SIZE)) + 14
               for v, g in labels]
    lay = layout(nodes, edges, label_w, PORT_GAP, ROW_GAP, CURVE_W, MARGIN)

    title = trace.title or f"jaxprop explain ({trace.mode} mode)"
    legend = ("green above a wire: forward value;  red below: gradient (upstream x local)"
              if reverse else
              "green above a wire: forward value;  blue below: tangent pushed forward")
    width = max(lay.width, text_width(title, TITLE_SIZE) + 2 * MARGIN,
                text_width(legend, LABEL_SIZE) + 2 * MARGIN)
    height = lay.height + TITLE_H
    fig = Figure(figsize=(width / 72, height / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    dy = TITLE_H
    ax.text(MARGIN, 14, title, fontsize=TITLE_SIZE, fontweight="bold", family=FONT,
            va="center")
    ax.text(MARGIN, 30, legend, fontsize=LABEL_SIZE, family=FONT, va="center", color="#444")

    def right_of(node: Node) -> tuple[float, float]:
        if node.kind == "gate":
            return node.x + (node.width + box_w[node.key]) / 2, node.y + dy
        return node.x + node.width, node.y + dy

    def left_of(node: Node, slot: int) -> tuple[float, float]:
        if node.kind == "gate":
            return node.x + (node.width - box_w[node.key]) / 2, node.port_y(slot, PORT_GAP) + dy
        return node.x, node.y + dy

    col_start = {}
    for c, col in enumerate(lay.columns):
        col_start[c] = min((nodes[k].x for k in col if nodes[k].kind != "in"), default=None)

    for w in lay.wires:
        src, dst = lay.nodes[w.src], lay.nodes[w.dst]
        x0, y0 = right_of(src)
        x1, y1 = left_of(dst, w.slot)
        if w.last:
            straight = label_w[w.edge]
            start = lay.straight_start[dst.column]
            xs = start
            verts = [(x0, y0), (x0 + (xs - x0) * 0.5, y0), (x0 + (xs - x0) * 0.5, y1), (xs, y1),
                     (x1, y1)]
            codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4,
                     MplPath.LINETO]
            value, grad = labels[w.edge]
            xm = xs + (straight - 14) / 2 + 4
            ax.text(xm, y1 - 3, value, fontsize=LABEL_SIZE, family=FONT, color=VALUE_COLOR,
                    ha="center", va="bottom")
            ax.text(xm, y1 + 3, grad, fontsize=LABEL_SIZE, family=FONT, color=grad_color,
                    ha="center", va="top")
        else:
            xm = (x0 + x1) / 2
            verts = [(x0, y0), (xm, y0), (xm, y1), (x1, y1)]
            codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4]
        ax.add_patch(PathPatch(MplPath(verts, codes), fill=False, edgecolor=WIRE_COLOR, lw=1.1))
        if dst.kind == "way":
            ax.plot([dst.x, dst.x + dst.width], [y1, y1], color=WIRE_COLOR, lw=1.1)
        if dst.kind in ("gate", "out"):
            ax.annotate("", xy=(x1, y1), xytext=(x1 - 6, y1),
                        arrowprops={"arrowstyle": "-|>", "color": WIRE_COLOR, "lw": 1.1,
                                    "shrinkA": 0, "shrinkB": 0})

    for key, node in lay.nodes.items():
        if node.kind == "in":
            ax.text(node.x + node.width - 4, node.y + dy, key[3:], fontsize=SYMBOL_SIZE,
                    family=FONT, ha="right", va="center", fontweight="bold")
        elif node.kind == "out":
            ax.text(node.x + 4, node.y + dy, "out", fontsize=SYMBOL_SIZE, family=FONT,
                    ha="left", va="center", fontweight="bold")
        elif node.kind == "gate":
            row = rows[key]
            bw = box_w[key]
            bh = node.height - 2 * (PATTERN_SIZE + 6)
            bx, by = node.x + (node.width - bw) / 2, node.y + dy - bh / 2
            ax.add_patch(FancyBboxPatch(
                (bx, by), bw, bh, boxstyle="round,pad=0,rounding_size=8",
                facecolor="#fff7e0" if row.synthetic else "#eef3fb", edgecolor="#333333",
                lw=1.2, linestyle="--" if row.synthetic else "-"))
            ax.text(bx + bw / 2, node.y + dy, row.symbol, fontsize=SYMBOL_SIZE, family=FONT,
                    ha="center", va="center", fontweight="bold")
            ax.text(bx + 3, by - 2, str(row.step), fontsize=PATTERN_SIZE, family=FONT,
                    ha="left", va="bottom", color="#777777")
            ax.text(bx + bw / 2, by + bh + 3, row.pattern, fontsize=PATTERN_SIZE,
                    family=FONT, ha="center", va="top", color="#6a3d9a", style="italic")
    return fig
