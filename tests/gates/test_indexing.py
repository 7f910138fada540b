"""The indexing gates at the scatter and gather corners that were always right, kept as guards
beside tests/test_no_silent_wrong.py (whose cases each failed once): every mode
gives jax.grad's answer, written out by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop

f64 = jnp.float64
X = jnp.array([1.0, 2.0, 3.0], f64)
V = jnp.array([1.0, 2.0], f64)
W3 = jnp.array([3.0, 5.0, 7.0], f64)  # weights that tell the places of z apart


def assert_every_mode_gives(f, args, expected, argnums=0):
    """jax.grad, jaxprop.reverse, jaxprop.forward and jax.grad of gated(f) under each rule
    set give ``expected`` (one array, or one per argument of a tuple ``argnums``)."""
    modes = {"jax.grad": jax.grad(f, argnums), "reverse": jaxprop.reverse.grad(f, argnums),
             "forward": jaxprop.forward.grad(f, argnums)}
    got = {name: grad(*args) for name, grad in modes.items()}
    for rules in ("jvp", "vjp"):
        with jaxprop.rule_set(rules):
            got[f"jax.grad(gated) {rules}"] = jax.grad(jaxprop.gated(f), argnums)(*args)
    many = isinstance(argnums, tuple)
    for name, g in got.items():
        for gi, ei in zip(g if many else [g], expected if many else [expected], strict=True):
            np.testing.assert_allclose(gi, np.asarray(ei), rtol=1e-12, atol=1e-12,
                                       err_msg=name)


def test_a_clipped_add_index_adds_at_the_edge():
    # mode="clip": index 7 adds at place 2, where index 2 adds too
    def f(x, u):
        return jnp.sum(x.at[jnp.array([2, 7])].add(u, mode="clip") * W3)
    assert_every_mode_gives(f, (X, V), ([3.0, 5.0, 7.0], [7.0, 7.0]), argnums=(0, 1))


@pytest.mark.parametrize("get", [lambda x, i: x.at[i].get(mode="clip"),
                                 lambda x, i: jnp.take(x, i, mode="clip")],
                         ids=["at_get", "take"])
def test_a_clipped_gather_index_reads_the_edge(get):
    def f(x):
        return jnp.sum(get(x, jnp.array([0, 5, 2])) * W3)
    assert_every_mode_gives(f, (X,), [3.0, 0.0, 12.0])


def test_a_gather_fill_of_zero_or_nan():
    def f(x):
        return jnp.sum(x.at[jnp.array([0, 5])].get(mode="fill", fill_value=0.0) ** 2)
    assert_every_mode_gives(f, (X,), [2.0, 0.0, 0.0])
    def g(x):
        return jnp.nansum(x.at[jnp.array([0, 5])].get(mode="fill") ** 2)  # nan filled
    assert_every_mode_gives(g, (X,), [2.0, 0.0, 0.0])


def test_gather_picking_twice_adds():
    def f(x):
        return jnp.sum(x[jnp.array([2, 0, 2])] * W3)
    assert_every_mode_gives(f, (X,), [5.0, 0.0, 10.0])
