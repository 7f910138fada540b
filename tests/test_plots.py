"""The run's figures: SVG written directly, a PNG encoder a real decoder reads back."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.image import imread

from jaxprop.train import plots

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("image", [
    np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
    np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8),
])
def test_png_bytes_decode_to_the_same_pixels(image):
    decoded = imread(io.BytesIO(plots.png_bytes(image)), format="png")
    np.testing.assert_array_equal(np.rint(decoded * 255).astype(np.uint8), image)


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (0.23, 2.71), (-3.0, 17.0), (5.0, 5.0),
                                    (1e-4, 3e-4)])
def test_ticks_are_round_and_cover_the_range(lo, hi):
    ticks = plots.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
    steps = np.diff(ticks)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert round(mantissa, 6) in (1.0, 2.0, 5.0)


def test_a_line_chart_places_every_point_and_skips_non_finite(tmp_path):
    path = tmp_path / "c.svg"
    plots.line_chart(path, [("a", [1, 2, 3, 4], [0.5, 1.0, float("nan"), 2.0]),
                            ("b", [1, 2, 3, 4], [2.0, 1.5, 1.0, 0.5])], "t <&>", "x", "y")
    root = ET.parse(path).getroot()
    lines = root.findall(f"{SVG}polyline")
    assert [len(p.get("points").split()) for p in lines] == [2, 1, 4]  # a's gap splits it
    assert "t <&>" in [t.text for t in root.iter(f"{SVG}text")]  # escaped, parsed back
    assert len(root.findall(f"{SVG}circle")) == 7


def test_plots_of_a_run_cost_milliseconds(tmp_path):
    import time

    metrics = [{"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 1 / e, "val_acc": 0.9}
               for e in range(1, 31)]
    t0 = time.perf_counter()
    plots.plot_loss(metrics, tmp_path / "loss.svg", "run")
    plots.plot_accuracy(metrics, tmp_path / "accuracy.svg", "run")
    plots.plot_templates(np.random.default_rng(0).normal(size=(65, 10)), (8, 8),
                         [str(c) for c in range(10)], True, tmp_path / "t.svg", "run")
    assert time.perf_counter() - t0 < 0.5  # matplotlib took over a second for these
