"""A layered left-to-right layout of the circuit, in pure Python (no graphviz).

Columns are topological depths: inputs in column 0, a gate one column right of its deepest
input, the outputs in the last column. A wire that spans several columns is routed through
one waypoint per column it crosses, so no wire passes through a gate. The order within a
column comes from barycenter sweeps (each node near the mean position of its neighbours),
and the vertical positions from a few rounds of pulling each node towards its neighbours'
ports while keeping the nodes of a column apart.

Units are points (1/72 inch); y grows downwards.
"""

from __future__ import annotations

import dataclasses

CHAR_W = 0.61
"""Width of one character of DejaVu Sans Mono, in font sizes."""


@dataclasses.dataclass
class Node:
    """A box in the layout: a gate, an input label, an output label, or a waypoint."""

    key: str
    kind: str  # "in" | "gate" | "out" | "way"
    width: float
    height: float
    n_ports: int = 1
    column: int = 0
    x: float = 0.0  # left edge
    y: float = 0.0  # centre

    def port_y(self, slot: int, port_gap: float) -> float:
        """The y of input port ``slot`` on the left edge."""
        return self.y + (slot - (self.n_ports - 1) / 2) * port_gap


@dataclasses.dataclass
class Wire:
    """One segment of a wire, from ``src`` to input ``slot`` of ``dst``."""

    src: str
    dst: str
    slot: int
    edge: int  # index of the edge in the trace
    last: bool  # the segment that ends at the edge's real destination (carries the labels)


@dataclasses.dataclass
class Layout:
    nodes: dict[str, Node]
    wires: list[Wire]
    columns: list[list[str]]
    straight_start: list[float]  # per column: where the labelled straight wires begin
    width: float
    height: float


def text_width(text: str, size: float) -> float:
    return max((len(line) for line in text.split("\n")), default=0) * size * CHAR_W


def layout(nodes: dict[str, Node], edges: list[tuple[str, str, int]], label_widths: list[float],
           port_gap: float, row_gap: float, curve_w: float, margin: float) -> Layout:
    """Places ``nodes`` (sizes given) for ``edges`` ``(src, dst, slot)``.

    ``label_widths[i]`` is how much straight wire edge i needs before its destination for
    its value and gradient labels.
    """
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    for src, dst, _ in edges:
        preds[dst].append(src)
    depth: dict[str, int] = {}

    def depth_of(k: str) -> int:
        if k not in depth:
            depth[k] = 0 if not preds[k] else 1 + max(depth_of(p) for p in preds[k])
        return depth[k]

    for k in nodes:
        depth_of(k)
    last = max(depth.values())
    for k, node in nodes.items():
        node.column = last if node.kind == "out" else depth[k]
    n_cols = last + 1

    # Waypoints for wires that span several columns.
    wires: list[Wire] = []
    for i, (src, dst, slot) in enumerate(edges):
        prev = src
        for c in range(nodes[src].column + 1, nodes[dst].column):
            way = f"way:{i}:{c}"
            nodes[way] = Node(way, "way", 0.0, port_gap, column=c)
            wires.append(Wire(prev, way, 0, i, False))
            prev = way
        wires.append(Wire(prev, dst, slot, i, True))

    columns: list[list[str]] = [[] for _ in range(n_cols)]
    for k, node in nodes.items():
        columns[node.column].append(k)
    into: dict[str, list[Wire]] = {k: [] for k in nodes}
    out_of: dict[str, list[Wire]] = {k: [] for k in nodes}
    for w in wires:
        into[w.dst].append(w)
        out_of[w.src].append(w)

    _order(columns, into, out_of)
    straight_start = _place_x(columns, nodes, wires, label_widths, curve_w, margin)
    _place_y(columns, nodes, into, out_of, port_gap, row_gap)

    top = min(n.y - n.height / 2 for n in nodes.values())
    for n in nodes.values():
        n.y += margin - top
    height = max(n.y + n.height / 2 for n in nodes.values()) + margin
    width = max(n.x + n.width for n in nodes.values()) + margin
    return Layout(nodes, wires, columns, straight_start, width, height)


def _order(columns, into, out_of) -> None:
    """Barycenter sweeps: each node moves towards the mean index of its neighbours."""
    index = {k: i for col in columns for i, k in enumerate(col)}

    def bary(k, wires, end):
        ns = [index[getattr(w, end)] + 0.01 * w.slot for w in wires]
        return sum(ns) / len(ns) if ns else index[k]

    for _ in range(4):
        for col in columns[1:]:
            col.sort(key=lambda k: bary(k, into[k], "src"))
            index.update({k: i for i, k in enumerate(col)})
        for col in reversed(columns[:-1]):
            col.sort(key=lambda k: _down_bary(k, out_of[k], index))
            index.update({k: i for i, k in enumerate(col)})


def _down_bary(k, wires, index):
    ns = [index[w.dst] + 0.3 * w.slot for w in wires]
    return sum(ns) / len(ns) if ns else index[k]


def _place_x(columns, nodes, wires, label_widths, curve_w, margin) -> list[float]:
    widths = [max((nodes[k].width for k in col), default=0.0) for col in columns]
    gaps = [0.0] * len(columns)  # straight wire needed before column c
    for w in wires:
        if w.last:
            c = nodes[w.dst].column
            gaps[c] = max(gaps[c], label_widths[w.edge])
    x = margin
    straight_start = []
    for c, col in enumerate(columns):
        if c:
            x += curve_w + gaps[c]
        straight_start.append(x - gaps[c])
        for k in col:
            node = nodes[k]
            if node.kind == "in":
                node.x = x + widths[c] - node.width  # labels end where their wire starts
            elif node.kind == "way":
                node.width = widths[c]
                node.x = x
            else:
                node.x = x + (widths[c] - node.width) / 2
        x += widths[c]
    return straight_start


def _place_y(columns, nodes, into, out_of, port_gap, row_gap) -> None:
    for col in columns:
        y = 0.0
        for k in col:
            nodes[k].y = y + nodes[k].height / 2
            y += nodes[k].height + row_gap

    def settle(col, desired):
        """Keeps the order and the spacing, each node as near its wish as it can (least squares).

        With z_i = y_i - (spacing above i), the constraint is z nondecreasing, so the best z
        is the isotonic regression of the wishes: pool adjacent violators.
        """
        offset, acc = [], 0.0
        for i, k in enumerate(col):
            if i:
                acc += (nodes[col[i - 1]].height + nodes[k].height) / 2 + row_gap
            offset.append(acc)
        blocks: list[list[float]] = []  # [sum, count]
        for k, off in zip(col, offset, strict=False):
            blocks.append([desired[k] - off, 1.0])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                s, n = blocks.pop()
                blocks[-1][0] += s
                blocks[-1][1] += n
        zs = [b[0] / b[1] for b in blocks for _ in range(int(b[1]))]
        for k, z, off in zip(col, zs, offset, strict=False):
            nodes[k].y = z + off

    def wish_from_left(k):
        ws = into[k]
        if not ws:
            return nodes[k].y
        return sum(nodes[w.src].y - (nodes[k].port_y(w.slot, port_gap) - nodes[k].y)
                   for w in ws) / len(ws)

    def wish_from_right(k):
        ws = out_of[k]
        if not ws:
            return nodes[k].y
        return sum(nodes[w.dst].port_y(w.slot, port_gap) for w in ws) / len(ws)

    for _ in range(6):
        for col in columns[1:]:
            settle(col, {k: wish_from_left(k) for k in col})
        for col in reversed(columns[:-1]):
            settle(col, {k: (wish_from_right(k) + nodes[k].y) / 2 if into[k] else
                         wish_from_right(k) for k in col})
    for col in columns[1:]:
        settle(col, {k: wish_from_left(k) if nodes[k].kind in ("way", "out") else nodes[k].y
                     for k in col})
