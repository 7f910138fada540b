"""Real-world style functions (``tests/real_world.py``) run through our rules: each gives
``jax.grad``'s gradients in float64 through ``jaxprop.reverse``, ``jaxprop.forward`` and
``jax.grad(jaxprop.gated(f))``, and ``jaxprop.observe`` sees only our gates' rules."""

from __future__ import annotations

import zlib

import jax
import numpy as np
import pytest
from real_world import FUNCTIONS

import jaxprop
from jaxprop.gate import Gate


def _grad(mode: str, f, argnums):
    if mode == "reverse":
        return jaxprop.reverse.grad(f, argnums=argnums)
    if mode == "forward":
        return jaxprop.forward.grad(f, argnums=argnums)
    return jax.grad(jaxprop.gated(f), argnums=argnums)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.slow  # 29 functions in 3 modes: the slow job (.ci/run)
@pytest.mark.parametrize("mode", ["reverse", "forward", "gated"])
def test_gives_jax_grads_through_our_rules(name, mode):
    fn, make_args, argnums = FUNCTIONS[name]
    args = make_args(np.random.default_rng(zlib.crc32(name.encode())))
    events = []
    with jax.numpy_rank_promotion("allow"):  # others' code broadcasts ranks as NumPy does
        want = jax.grad(fn, argnums=argnums)(*args)
        with jaxprop.observe(events.append):
            got = _grad(mode, fn, argnums)(*args)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-7, atol=1e-10, err_msg=f"{name} ({mode})")
    kinds = {"vjp"} if mode == "reverse" else {"jvp"}  # gated: JVP rules JAX transposes
    ran = [e for e in events if e.kind in kinds]
    assert ran, f"{name}: no rule of ours ran in {mode} mode"
    foreign = {type(e.gate).__name__ for e in events if not isinstance(e.gate, Gate)}
    assert not foreign, f"{name}: rules other than our gates ran: {foreign}"
