"""The docs are true: every ```python and ```bash block of README.md and docs/*.md runs here.

- The python blocks of one document run in order, as one script (a tutorial builds on its
  earlier blocks), in a fresh Python process in an empty folder: float32 and JAX's defaults,
  as a user's own session runs them. A traceback names the document and its line.
- Each bash block runs with ``bash -euo pipefail`` in an empty folder that holds the user's
  files the docs assume (``USER_FILES``), with this environment's ``jaxprop`` first on PATH,
  so what a command writes (``runs/``, ``--out docs``) lands in that folder. Every
  background job of the block must succeed too. A picture a block writes into ``docs/`` must
  be the very file of the repository's docs/ (the docs say rerunning rewrites it).
- A block that cannot run here has, on the line right before its fence,
  ``<!-- not run: REASON -->``; one that takes minutes has ``<!-- slow: REASON -->`` and runs
  only under ``-m slow`` (.ci/run's second job).
- A block in any other language, or none, is text (output, a synopsis, a diagram); one that
  starts like a command or a Python session (``jaxprop ...``, ``python ...``, ``>>>``) must
  be tagged, so that it runs or says why not.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
MARKER = re.compile(r"^<!--\s*(not run|slow):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
LOOKS_RUNNABLE = re.compile(r"^(\$ |>>>|jaxprop [a-z]|python3? |pip |[A-Z_]+=\S* jaxprop )")
TIMEOUT = {"fast": 300, "slow": 1800}  # seconds a block may take, in the suite and with -m slow


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # the line of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # "not run", "slow" or None
    reason: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of one markdown file, with the marker on the line before each."""
    lines = path.read_text().splitlines()
    doc = str(path.relative_to(ROOT))
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{doc}:{start + 1}: a code block is never closed"
        mark = MARKER.match(lines[start - 1]) if start else None
        code = "\n".join(lines[start + 1:end]) + "\n"
        found.append(Block(doc, start + 1, m.group(1).lower(), code,
                           mark.group(1) if mark else None, mark.group(2) if mark else ""))
        i = end + 1
    return found


ALL_BLOCKS = [b for path in DOCS for b in blocks_of(path)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in RUN and b.marker != "not run"]


def _marks(slow: bool):
    return [pytest.mark.slow] if slow else []


# ------------------------------------------------------------------------- what runs, what not


def test_the_blocks_are_found_and_every_marker_gives_its_reason():
    langs = {b.lang for b in RUNNABLE}
    assert langs == {"python", "bash"}, langs
    assert len(RUNNABLE) >= 20, [b.id for b in RUNNABLE]
    for b in ALL_BLOCKS:
        if b.marker:
            assert len(b.reason.split()) >= 3, f"{b.id}: say why the block is {b.marker}"
    # a marker that is not right before a fence marks nothing: a typo, or a moved block
    for path in DOCS:
        lines = path.read_text().splitlines()
        for k, line in enumerate(lines):
            if MARKER.match(line):
                nxt = lines[k + 1] if k + 1 < len(lines) else ""
                assert FENCE.match(nxt), f"{path.name}:{k + 1}: a marker not followed by a block"
            elif re.match(r"^<!--\s*(not[ -]?run|slow)\b", line, re.I):
                raise AssertionError(f"{path.name}:{k + 1}: write <!-- not run: REASON --> "
                                     f"or <!-- slow: REASON -->, got {line!r}")


def test_a_block_that_looks_runnable_is_tagged():
    untagged = []
    for b in ALL_BLOCKS:
        if b.lang in RUN or b.marker == "not run":
            continue
        first = next((ln for ln in b.code.splitlines() if ln.strip()), "")
        if LOOKS_RUNNABLE.match(first):
            untagged.append(f"{b.id}: {first!r}")
    assert not untagged, ("tag these blocks ```bash or ```python so they run, or mark them "
                          "<!-- not run: REASON -->: " + "; ".join(untagged))


# ----------------------------------------------------------------------------- python blocks

RUNNER = textwrap.dedent("""
    import json, sys
    namespace = {"__name__": "__main__"}
    for path, line, code in json.load(open(sys.argv[1])):
        # the code's first line is the fence's next line, so a traceback names the doc's line
        exec(compile("\\n" * line + code, path, "exec"), namespace)
""")


def _python_docs():
    docs = {}
    for b in RUNNABLE:
        if b.lang == "python":
            docs.setdefault(b.doc, []).append(b)
    return [pytest.param(doc, blocks, id=doc, marks=_marks(any(b.marker for b in blocks)))
            for doc, blocks in docs.items()]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    for key in ("JAX_ENABLE_X64", "JAX_NUMPY_RANK_PROMOTION", "JAX_PLATFORMS", "XLA_FLAGS"):
        env.pop(key, None)
    return env


def _run(what: str, argv: list[str], cwd: Path, slow: bool):
    """Runs argv in its own process group, so that a timeout also stops what a block started."""
    timeout = TIMEOUT["slow" if slow else "fast"]
    with subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"{what} ran over {timeout} s" + (
                "" if slow else ": mark a block that takes minutes <!-- slow: REASON -->"))
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _failure(what: str, result) -> str:
    out = (result.stdout or "")[-3000:]
    err = (result.stderr or "")[-6000:]
    return f"{what} failed, exit {result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


@pytest.mark.parametrize(("doc", "blocks"), _python_docs())
def test_the_python_blocks_of_a_document_run(doc, blocks, tmp_path):
    script = tmp_path / "blocks.json"
    script.write_text(json.dumps([(str(ROOT / b.doc), b.line, b.code) for b in blocks]))
    work = tmp_path / "work"
    work.mkdir()
    result = _run(f"{doc}'s python blocks", [sys.executable, "-c", RUNNER, str(script)], work,
                  slow=any(b.marker for b in blocks))
    assert result.returncode == 0, _failure(f"{doc}'s python blocks", result)


# ------------------------------------------------------------------------------- bash blocks

# The user's own files the docs' commands name: the gate of docs/writing_a_gate.md in
# mygates.py, and the functions explain is shown on.
USER_FILES = {
    "mygates.py": '''
        import jax.numpy as jnp

        from jaxprop import Gate


        def tanh_forward(x):
            t = jnp.tanh(x)
            return t, t


        tanh = Gate(
            "tanh", "scaled local gradient", tanh_forward,
            vjp=(lambda t, t_bar: t_bar * (1 - t * t),),
            jvp=(lambda t, x_dot: (1 - t * t) * x_dot,),
            local=("1-t^2",), tangent="(1-t^2) x_dot", output="t", elementwise=True,
        )


        def f(x):
            return jnp.sum(tanh(x) * 2.0)
    ''',
    "mypkg/__init__.py": "",
    "mypkg/funcs.py": '''
        def f(x, y, z):
            return (x + y) * z
    ''',
    "funcs.py": '''
        import jax.numpy as jnp


        def g(x):
            return jnp.maximum(0.0, x)


        def loss(scores, labels):
            n = scores.shape[0]
            log_sum = jnp.log(jnp.sum(jnp.exp(scores), axis=1))
            return jnp.mean(log_sum - scores[jnp.arange(n), labels])
    ''',
}

# After the block: each background job it started must succeed as well.
WAIT_FOR_JOBS = "\nfor job in $(jobs -p); do wait \"$job\"; done\n"


def _bash_params():
    return [pytest.param(b, id=b.id, marks=_marks(b.marker == "slow"))
            for b in RUNNABLE if b.lang == "bash"]


@pytest.mark.parametrize("block", _bash_params())
def test_a_bash_block_runs(block, tmp_path):
    for name, text in USER_FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    (tmp_path / "block.sh").write_text(block.code + WAIT_FOR_JOBS)
    result = _run(block.id, ["bash", "-euo", "pipefail", "block.sh"], tmp_path,
                  slow=block.marker == "slow")
    assert result.returncode == 0, _failure(f"{block.id}:\n{block.code}", result)
    for picture in sorted((tmp_path / "docs").glob("*.svg")):
        shipped = ROOT / "docs" / picture.name
        assert shipped.exists() and picture.read_bytes() == shipped.read_bytes(), (
            f"{block.id} wrote docs/{picture.name}, which differs from the repository's: "
            "rerun the block in the repository and commit the picture")


# ------------------------------------------------------------------------ figures quoted twice

STARTUP = re.compile(r"(\d+\.\d) s end to end with a cold compilation cache, (\d+\.\d) s with a "
                     r"warm one")


def _startup_median(benchmarks: str, which: str) -> str:
    row = re.search(rf"^\| `startup` \| jaxprop train, {which} cache \(s\) \|[^|]*\| ([\d.]+) \|",
                    benchmarks, flags=re.M)
    assert row, f"docs/benchmarks.md has no startup row for the {which} cache"
    return f"{float(row.group(1)):.1f}"


def test_the_start_up_time_is_the_benchmarks_figure_wherever_it_is_quoted():
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    measured = (_startup_median(benchmarks, "cold"), _startup_median(benchmarks, "warm"))
    for doc in ("README.md", "docs/training.md"):
        text = " ".join((ROOT / doc).read_text().split())
        quoted = STARTUP.findall(text)
        assert quoted == [measured], (
            f"{doc} quotes the start-up of `jaxprop train` as {quoted}; docs/benchmarks.md's "
            f"startup rows say {measured[0]} s cold, {measured[1]} s warm: quote those")
