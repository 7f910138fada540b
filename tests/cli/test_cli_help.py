"""The CLI answers --help and --version without importing JAX, and --keys lists every setting
with its choices."""

import subprocess
import sys

import pytest

import jaxprop

NO_JAX = """
import sys
from jaxprop.cli import main
for argv in ARGV:
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
loaded = sorted(m for m in sys.modules if m == "jax" or m.startswith(("jax.", "jaxlib")))
assert not loaded, loaded[:5]
print("no jax")
"""


def test_help_and_version_answer_without_importing_jax():
    argv = [["--help"], ["--version"], ["train", "--help"], ["sweep", "--help"],
            ["compare", "--help"], ["explain", "--help"], ["check", "--help"]]
    result = subprocess.run([sys.executable, "-c", NO_JAX.replace("ARGV", repr(argv))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("no jax")
    assert f"jaxprop {jaxprop.__version__}" in result.stdout
    for command in ("train", "sweep", "compare", "explain", "check"):
        assert f"usage: jaxprop {command}" in result.stdout
    assert "sigmoid-gate" in result.stdout  # explain --help lists the built-in examples


@pytest.mark.parametrize("command", ["train", "compare"])
def test_keys_lists_every_setting_with_its_choices(command, capsys):
    from jaxprop.cli import main

    assert main([command, "--keys"]) == 0
    out = capsys.readouterr().out
    if command == "train":
        assert "model.kind = two_layer" in out and "one of linear, two_layer" in out
        assert "optimizer.name = adam" in out and "one of sgd, momentum, adam" in out
    else:
        assert "width.activation = sigmoid" in out and "one of sigmoid, relu" in out
