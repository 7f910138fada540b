"""``jaxprop compare``: its config, its errors and a tiny end-to-end run."""

import argparse
import csv
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from jaxprop import _settings
from jaxprop.cli import compare as cli_compare
from jaxprop.compare import DEFAULTS, PIPELINES, QUICK, load_config


def apply_set(config, assignment):
    return _settings.apply(config, [assignment])

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "compare.toml"

TINY = [  # the smallest run that still exercises every output of the two fastest sections
    "--quick",
    "--set", "sections=width,big_jacobian",
    "--set", "width.product=16",
    "--set", "width.n=[2, 8]",
    "--set", "width.hidden=4",
    "--set", "repeats=1",
    "--set", "big_jacobian.input=64",
    "--set", "big_jacobian.output=64",
]


def parse(argv):
    parser = argparse.ArgumentParser(prog="jaxprop")
    cli_compare.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["compare", *argv])


def test_toml_file_holds_the_built_in_defaults():
    file = tomllib.loads(CONFIG.read_text())
    quick = file.pop("quick")
    assert file == DEFAULTS
    assert quick == QUICK
    assert load_config(CONFIG) == load_config(None)
    assert load_config(CONFIG, quick=True) == load_config(None, quick=True)


def test_quick_and_set_and_out_apply_in_order():
    config = load_config(None, quick=True, sets=["width.hidden=5", "width.n=1,2,4"],
                         out="elsewhere")
    assert config.repeats == QUICK["repeats"]
    assert config.width.hidden == 5
    assert config.width.n == (1, 2, 4)
    assert config.width.depth == QUICK["width"]["depth"]
    assert config.depth.inputs == DEFAULTS["depth"]["inputs"]
    assert config.out == "elsewhere"


def test_a_config_file_may_give_only_some_keys(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('repeats = 2\n[width]\nhidden = 9\n[quick.width]\ndepth = 4\n')
    assert load_config(path).width.hidden == 9
    assert load_config(path, quick=True).width.depth == 4
    assert _settings.to_dict(load_config(path))["depth"] == DEFAULTS["depth"]


@pytest.mark.parametrize(
    "sets, error, match",
    [
        (["bogus=1"], ValueError, "unknown config key 'bogus'; valid keys: out, seed"),
        (["width.bogus=1"], ValueError, "unknown config key 'width.bogus'"),
        (["repeats"], ValueError, "--set expects KEY=VALUE"),
        (["repeats=fast"], TypeError, "'repeats' must be an integer; got 'fast'"),
        (["repeats=0"], ValueError, "'repeats' must be >= 1; got 0"),
        (["width.activation=tanh"], ValueError,
         r"'width.activation' must be one of 'sigmoid', 'relu'; got 'tanh'"),
        (["dtype=float16"], ValueError, "'dtype' must be one of"),
        (["sections=width,plots"], ValueError, r"'sections\[1\]' must be one of 'width', "
                                               r"'depth'.*; got 'plots'"),
        (["width.n=[3]"], ValueError, "do not divide width.product=4096"),
        (["two_layer.reg=-1.0"], ValueError, "'two_layer.reg' must be >= 0.0"),
        (["big_jacobian.run=1"], TypeError, r"'big_jacobian.run' must be a boolean \(true/false\)"),
        (["width.n=[]"], TypeError, "'width.n' must be a non-empty list"),
    ],
)
def test_bad_settings_are_named(sets, error, match):
    with pytest.raises(error, match=match):
        load_config(None, sets=sets)


def test_bad_config_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file 'no/such.toml' not found"):
        load_config("no/such.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("repeats = \n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(bad)
    bad.write_text("[width]\nwidth = 3\n")
    with pytest.raises(ValueError, match="unknown config key 'width.width'"):
        load_config(bad)
    bad.write_text("[quick]\nrepeat = 3\n")
    with pytest.raises(ValueError, match="unknown config key 'quick.repeat'"):
        load_config(bad)


def test_apply_set_leaves_its_input_alone():
    config = load_config(None)
    assert apply_set(config, "width.hidden=3").width.hidden == 3
    assert config.width.hidden == DEFAULTS["width"]["hidden"]


def test_tiny_run_writes_csv_figure_and_tables(tmp_path, capsys):
    args = parse([*TINY, "--out", str(tmp_path)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "crossover n/m (forward-ours vs reverse-ours)" in printed
    with (tmp_path / "compare.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(PIPELINES)  # one row per pipeline and size
    assert {r["pipeline"] for r in rows} == set(PIPELINES)
    assert {(r["n"], r["m"]) for r in rows} == {("2", "8"), ("8", "2")}
    assert all(float(r["max_rel_err"]) < 1e-4 for r in rows)  # float32 run
    assert (tmp_path / "time_vs_width.png").read_bytes()[:4] == b"\x89PNG"
    tables = (tmp_path / "tables.md").read_text()
    assert "### Width sweep" in tables and "reverse.jacobian dy/dx" in tables
    assert (tmp_path / "big_jacobian.json").is_file()


def test_user_errors_exit_2_without_a_traceback(capsys):
    assert cli_compare.main(["--set", "width.depth=deep"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxprop compare: error: config key 'width.depth' must be an integer")
    assert "Traceback" not in err


def test_the_experiment_script_is_the_cli():
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "compare_modes.py"), "--config",
         "missing.toml"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "jaxprop compare: error: config file 'missing.toml' not found"


def test_jaxprop_cli_has_the_compare_command(capsys):
    from jaxprop.cli import main

    assert main(["compare", "--set", "bogus=1"]) == 2
    assert "jaxprop compare: error: --set: unknown config key 'bogus'" in capsys.readouterr().err
