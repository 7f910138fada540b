"""The run's figures (matplotlib, written as SVG): the data each one plots, read back from its
Figure, and the SVG file it writes."""

import xml.etree.ElementTree as ET

import numpy as np
from matplotlib.patches import Rectangle

from jaxprop.train import plots

SVG = "{http://www.w3.org/2000/svg}"
METRICS = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 1 - 1 / (e + 1),
            "val_acc": float("nan") if e == 3 else 0.5 + 0.01 * e} for e in range(1, 8)]


def _texts(path) -> list[str]:
    root = ET.parse(path).getroot()  # a whole, well-formed SVG document
    assert root.tag == f"{SVG}svg"
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_curves_plot_every_epoch_and_leave_a_gap_for_non_finite(tmp_path):
    fig = plots.accuracy_figure(METRICS, "run <&>")
    (ax,) = fig.axes
    assert ax.get_title() == "run <&>: accuracy" and ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val"]
    train, val = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), range(1, 8))
    np.testing.assert_allclose(train.get_ydata(), [m["train_acc"] for m in METRICS])
    y = np.asarray(val.get_ydata(), float)
    assert np.isnan(y[2])  # epoch 3's val_acc is NaN: a gap in the line, not a zero
    np.testing.assert_allclose(np.delete(y, 2), [0.5 + 0.01 * e for e in (1, 2, 4, 5, 6, 7)])

    plots.plot_accuracy(METRICS, tmp_path / "accuracy.svg", "run <&>")
    texts = _texts(tmp_path / "accuracy.svg")
    assert "run <&>: accuracy" in texts and "train" in texts and "val" in texts


def test_the_loss_curve_plots_the_mean_loss_per_epoch(tmp_path):
    (ax,) = plots.loss_figure(METRICS).axes
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xydata(), [[m["epoch"], m["train_loss"]]
                                                   for m in METRICS])
    assert ax.get_title() == "training loss" and ax.get_ylabel() == "loss"
    plots.plot_loss(METRICS, tmp_path / "loss.svg", "digits")
    assert "digits: training loss" in _texts(tmp_path / "loss.svg")


def test_the_templates_are_the_columns_of_w_without_the_bias_row(tmp_path):
    w = np.random.default_rng(0).normal(size=(65, 12))
    names = [f"c{k}" for k in range(12)]
    fig = plots.templates_figure(w, (8, 8), names, True, "run")
    expected = plots.class_templates(w, (8, 8), True)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == names  # 12 classes: two rows of up to 10
    for ax, template in zip(shown, expected):
        (image,) = ax.images
        np.testing.assert_allclose(image.get_array(), template)
        assert image.get_clim() == (0.0, 1.0) and image.get_cmap().name == "gray"
    plots.plot_templates(w, (8, 8), names, True, tmp_path / "t.svg", "run")
    texts = _texts(tmp_path / "t.svg")
    assert set(names) <= set(texts) and "run: class templates (columns of W)" in texts


def test_the_heatmap_labels_every_cell_and_outlines_the_best(tmp_path):
    acc = np.array([[0.9, np.nan, 0.8], [0.95, 0.7, 0.85]])
    fig = plots.heatmap_figure([1e-3, 1e-2], [0.0, 1e-4, 1e-3], acc, "sweep")
    ax = fig.axes[0]
    data = ax.images[0].get_array()
    assert data.mask[0, 1] and not data.mask.sum() - 1  # only the diverged run is masked
    np.testing.assert_allclose(data.filled(0), np.nan_to_num(acc))
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert cells == {(0, 0): "0.900", (0, 1): "diverged", (0, 2): "0.800",
                     (1, 0): "0.950", (1, 1): "0.700", (1, 2): "0.850"}
    (best,) = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_edgecolor()[0] == 1]
    assert best.get_xy() == (-0.5, 0.5)  # row 1 (lr 1e-2), column 0 (reg 0): 0.950
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1e-04", "1e-03"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1e-03", "1e-02"]
    plots.plot_heatmap([1e-3, 1e-2], [0.0, 1e-4, 1e-3], acc, tmp_path / "h.svg", "sweep")
    texts = _texts(tmp_path / "h.svg")
    assert "sweep: val accuracy" in texts and "diverged" in texts and "0.950" in texts
