"""The lecture notebook runs, and what it displays is the table and the circuit.

``experiments/lecture.ipynb`` walks through the lecture ((x + y) z, the neuron gate by gate,
the patterns, a branch, ReLU and matmul with vectors, the 256 GB Jacobian, forward against
reverse, checking a gate); its cells assert the slides' numbers. Executing it here keeps it
from rotting. A Trace and an Advice display through IPython's display protocol.
"""

from pathlib import Path

import jax.numpy as jnp
import nbclient
import nbformat
import pytest
from IPython.core.formatters import DisplayFormatter

import jaxprop

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "lecture.ipynb"


def test_the_lecture_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell if an assert fails
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "execute_result"]
    circuits = [o for o in shown if "image/svg+xml" in o.data and "text/html" in o.data]
    assert len(circuits) >= 5  # every explained example shows its table and circuit
    assert all("<svg" in o.data["text/html"] for o in circuits)
    assert any("Jacobian [m, n]" in o.data["text/plain"] and "<table>" in o.data["text/html"]
               for o in shown)  # an Advice
    assert any("jaxprop.check of gate 'tanh'" in o.data["text/plain"] for o in shown)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type in ("error", "display_data")]


@pytest.fixture(scope="module")
def formatter():
    return DisplayFormatter()


def test_a_trace_displays_html_and_svg(formatter):
    trace = jaxprop.explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
    data, _ = formatter.format(trace)
    assert {"text/plain", "text/html", "image/svg+xml"} <= set(data)
    assert data["image/svg+xml"].lstrip().startswith("<?xml") and "<svg" in data["image/svg+xml"]
    html = data["text/html"]
    assert "jaxprop explain (reverse mode)" in html and html.count("<svg") == 1
    assert "distributor" in html and "switcher" in html
    assert len(data["text/plain"]) < 20_000 and "jaxprop explain" in data["text/plain"]
    assert len(repr(trace)) < 200


def test_an_advice_displays_html(formatter):
    advice = jaxprop.advise(lambda x: jnp.tanh(x @ jnp.ones((4, 30))), jnp.ones(4))
    data, _ = formatter.format(advice)
    assert "Use forward mode" in data["text/html"] and "<table>" in data["text/html"]
    assert len(repr(advice)) < 200 and "forward" in repr(advice)
