"""The path from ``jaxprop.reverse.grad`` of plain code to a gate's VJP rule, as
docs/DEVELOPING.md draws it: reverse.py -> wiring.py (pullback enters the "vjp" rule set) ->
tracer.py (each equation applied as its gate) -> wiring.py (the gate wired as a custom_vjp;
its backward calls the rule) -> gates/nonlinear.py (the rule). Four files."""

import traceback
from pathlib import Path

import jax.numpy as jnp

import jaxprop
from jaxprop import gates, tracer
from jaxprop.gate import Gate

PACKAGE = Path(jaxprop.__file__).parent


def _path() -> list[str]:
    """jaxprop's files on the stack from reverse mode's own code down (core.py's jitted
    driver, argnums and checks sit above it), in order, each run of one file once."""
    files = [Path(f.filename).relative_to(PACKAGE).as_posix()
             for f in traceback.extract_stack() if Path(f.filename).is_relative_to(PACKAGE)]
    files = files[files.index("reverse.py"):]
    return [f for k, f in enumerate(files) if k == 0 or files[k - 1] != f]


def test_reverse_grad_reaches_a_gates_vjp_rule_through_four_files(monkeypatch):
    tanh = gates.tanh
    seen = {}

    def forward(x):
        seen["forward"] = _path()
        return tanh.forward(x)

    def vjp(res, z_bar):
        seen["vjp"] = _path()
        return tanh.vjp[0](res, z_bar)

    # tanh itself, with probes that note the stack where its forward and its VJP rule run
    probe = Gate("tanh", tanh.pattern, forward, vjp=(vjp,), jvp=tanh.jvp)
    monkeypatch.setitem(tracer.LIFTS, "tanh", (probe, None))
    x = jnp.array([0.5, -1.0])
    grad = jaxprop.reverse.grad(lambda x: jnp.sum(jnp.tanh(x)))(x)
    assert jnp.allclose(grad, 1 - jnp.tanh(x) ** 2)
    assert seen["forward"] == ["reverse.py", "wiring.py", "tracer.py", "wiring.py", "gate.py"]
    assert seen["vjp"] == ["reverse.py", "wiring.py"]
    rule_file = Path(tanh.vjp[0].__code__.co_filename).relative_to(PACKAGE).as_posix()
    assert rule_file == "gates/nonlinear.py"
    # gate.py above is run_forward, the probe's forward call, not a step of the path
    path = {*seen["forward"][:-1], *seen["vjp"], rule_file}
    assert path == {"reverse.py", "wiring.py", "tracer.py", "gates/nonlinear.py"}
