"""`jaxprop explain`: the table, the picture, user functions, and clear errors."""

import re
import sys
import xml.etree.ElementTree as ET

import pytest

from jaxprop import cli


@pytest.fixture
def main(monkeypatch):
    """The real ``jaxprop.cli.main``, with only the explain command registered."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("jaxprop.cli.explain",))
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_function may add the cwd
    return cli.main


USER_FN = """
from jaxprop import gates


def f(x, y):
    return gates.mul(gates.add(x, y), y)


def scale(v):
    return gates.mul(v, 3.0)
"""


def test_builtin_example_prints_the_table_and_writes_the_picture(main, tmp_path, capsys):
    assert main(["explain", "simple", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in ("distributor", "switcher", "gradients: x = -4; y = -4; z = 3",
                 "explain_simple.svg"):
        assert text in out
    root = ET.parse(tmp_path / "explain_simple.svg").getroot()
    assert root.tag.endswith("svg") and "-12" in "".join(root.itertext())


def test_forward_mode_and_png(main, tmp_path, capsys):
    args = ["explain", "relu-vector", "--mode", "forward", "--out", str(tmp_path), "--format",
            "both"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "router" in out and "gradients: x = [4, 0, 5, 0]" in out
    assert (tmp_path / "explain_relu-vector_forward.svg").stat().st_size > 0
    png = tmp_path / "explain_relu-vector_forward.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_default_out_dir(main, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "matmul"]) == 0
    assert (tmp_path / "runs" / "explain" / "explain_matmul.svg").is_file()


def test_user_function_from_a_file_and_from_a_module(main, tmp_path, monkeypatch, capsys):
    (tmp_path / "explain_user_fns.py").write_text(USER_FN)
    path = tmp_path / "explain_user_fns.py"
    assert main(["explain", f"{path}:f", "--args", "[1.0, 2.0]", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "adder" in out and "gradients: x = 2; y = 5" in out  # y feeds two gates
    assert len(list(tmp_path.glob("explain_*explain_user_fns_py_f.svg"))) == 1
    monkeypatch.chdir(tmp_path)
    args = ["explain", "explain_user_fns:scale", "--args", "[[1.0, -2]]", "--upstream",
            "[1, 10]", "--out", "pics"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "scaled local gradient" in out and "gradients: v = [3, 30]" in out
    assert (tmp_path / "pics" / "explain_explain_user_fns_scale.svg").is_file()


@pytest.mark.parametrize("argv, message", [
    (["nope"], r"unknown example 'nope'; expected one of \['matmul', 'relu-vector', "
               r"'sigmoid', 'sigmoid-gate', 'simple', 'two-layer'\]"),
    (["simple", "--args", "[1.0]"], "--args and --upstream are for module:function"),
    (["no_such_module_xyz:f", "--args", "[1.0]"], "cannot import module 'no_such_module_xyz'"),
    (["jaxprop.gates:nothing", "--args", "[1.0]"], "has no function 'nothing'; its functions"),
    (["missing_file.py:f", "--args", "[1.0]"], "no such file 'missing_file.py'"),
    (["jaxprop.explainer.lecture:simple"], "give the function's example arguments with --args"),
    (["jaxprop.explainer.lecture:simple", "--args", "[1.0, "], r"--args: cannot parse '\[1.0, '"),
    (["jaxprop.explainer.lecture:simple", "--args", "3.0"], "expected a non-empty list"),
    (["jaxprop.explainer.lecture:simple", "--args", "[1.0, 2.0]"],
     "f cannot take the 2 arguments given"),
    (["jaxprop.explainer.lecture:relu_vector", "--args", "[[1, [2]]]"],
     "--args entry 0: .* is not a number or a rectangular list"),
])
def test_errors_are_one_line_with_the_choices(main, argv, message, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxprop explain: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


LABELS_FN = """
from jaxprop import losses


def loss(y, s):  # integer labels first: their names must not shift the gradients' names
    return losses.softmax_loss(s, y)
"""


def test_integer_labels_stay_integers(main, tmp_path, capsys):
    path = tmp_path / "explain_labels.py"
    path.write_text(LABELS_FN)
    argv = ["explain", f"{path}:loss", "--args", "[[1, 0], [[0.0, 0.0], [0.0, 0.0]]]",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # softmax of equal scores is 1/2 each: ds = (p - onehot(y)) / N
    assert "gradients: s = [[0.25, -0.25], [-0.25, 0.25]]" in out


RNN_FN = """
import jax
import jax.numpy as jnp


def rnn(w, h0, xs):
    def step(h, x):
        h = jnp.tanh(w * h + x)
        return h, h
    return jnp.sum(jax.lax.scan(step, h0, xs)[0])
"""


def test_scan_steps_option(main, tmp_path, capsys):
    path = tmp_path / "explain_rnn_fn.py"
    path.write_text(RNN_FN)
    argv = ["explain", f"{path}:rnn", "--args", "[0.5, 0.1, [0.0, 0.2, 0.4, 0.6]]",
            "--out", str(tmp_path)]
    assert main([*argv, "--scan-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "tanh [t=0]" in out and "tanh [t=1]" not in out and "scan [t=1..3]" in out
    assert main(argv) == 0  # three steps by default
    out = capsys.readouterr().out
    assert "tanh [t=2]" in out and "scan [t=3]" in out
    assert main([*argv, "--scan-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--scan-steps must be a positive number of steps; got 0" in err
