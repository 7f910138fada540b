"""``jax.grad``'s other arguments on our drivers: ``allow_int`` works as in JAX (float0 zero
gradients for integer inputs), ``holomorphic=True`` and ``reduce_axes`` are refused as JAX
refuses them, in jaxprop's words."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprop

MODES = {"reverse": jaxprop.reverse, "forward": jaxprop.forward}


def f(x, n):
    return jnp.sum(jnp.tanh(x) * n) ** 2


X = jnp.array([0.3, -1.2, 2.0])
N = jnp.array([1, 2, 3])


def assert_same_tree(ours, theirs):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype != jax.dtypes.float0:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_grad_takes_every_argument_of_jax_grad(mode):
    ours = inspect.signature(MODES[mode].grad).parameters
    for name in inspect.signature(jax.grad).parameters:
        assert name in ours or name == "fun"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("argnums", [(0, 1), 1])
def test_allow_int_gives_float0_gradients_as_jax_grad(mode, argnums):
    ours = MODES[mode].grad(f, argnums=argnums, allow_int=True)(X, N)
    assert_same_tree(ours, jax.grad(f, argnums=argnums, allow_int=True)(X, N))


@pytest.mark.parametrize("mode", MODES)
def test_allow_int_in_a_pytree_with_value_and_aux(mode):
    def g(d):
        return jnp.sum(d["x"] ** 2) * jnp.sum(d["n"]), d["n"]

    d = {"x": X, "n": N}
    ours = MODES[mode].value_and_grad(g, has_aux=True, allow_int=True)(d)
    assert_same_tree(ours, jax.value_and_grad(g, has_aux=True, allow_int=True)(d))
    assert ours[1]["n"].dtype == jax.dtypes.float0


def test_reverse_jacobian_allow_int_as_jacrev():
    def h(x, n):
        return jnp.tanh(x) * n

    ours = jaxprop.reverse.jacobian(h, argnums=(0, 1), allow_int=True)(X, N)
    assert_same_tree(ours, jax.jacrev(h, argnums=(0, 1), allow_int=True)(X, N))


@pytest.mark.parametrize("mode", MODES)
def test_without_allow_int_an_integer_argument_names_it(mode):
    with pytest.raises(TypeError, match=r"argument 1 has a leaf of dtype int.*allow_int=True"):
        MODES[mode].grad(f, argnums=1)(X, N)


@pytest.mark.parametrize("make", [
    jaxprop.reverse.grad, jaxprop.reverse.value_and_grad, jaxprop.reverse.jacobian,
    jaxprop.forward.grad, jaxprop.forward.value_and_grad, jaxprop.forward.jacobian,
    jaxprop.hessian])
def test_holomorphic_is_refused_naming_complex_inputs(make):
    with pytest.raises(TypeError, match=r"^jaxprop\.\w+(\.\w+)?: holomorphic=True .*complex"):
        make(f, holomorphic=True)


@pytest.mark.parametrize("make", [
    jaxprop.reverse.grad, jaxprop.reverse.value_and_grad,
    jaxprop.forward.grad, jaxprop.forward.value_and_grad])
def test_reduce_axes_is_refused_as_jax_refuses_it(make):
    with pytest.raises(NotImplementedError):
        jax.grad(f, reduce_axes=("batch",))
    with pytest.raises(NotImplementedError, match=r"reduce_axes=\('batch',\).*JAX removed"):
        make(f, reduce_axes=("batch",))
    theirs = jax.value_and_grad if "value" in make.__name__ else jax.grad
    assert_same_tree(make(f, reduce_axes=())(X, 1.5), theirs(f, reduce_axes=())(X, 1.5))


@pytest.mark.parametrize("ours, theirs", [(jaxprop.reverse.jacobian, jax.jacrev),
                                          (jaxprop.forward.jacobian, jax.jacfwd),
                                          (jaxprop.hessian, jax.hessian)])
def test_the_jacobians_take_the_arguments_of_jacrev_and_jacfwd(ours, theirs):
    params = inspect.signature(ours).parameters
    assert set(inspect.signature(theirs).parameters) - {"fun", "has_aux"} <= set(params)
    if "allow_int" not in params:  # jacfwd has none: the message does not offer it
        with pytest.raises(TypeError, match=r"\(check argnums\)(\n|$)"):
            ours(lambda n: jnp.sum(n * 2.0))(N)
