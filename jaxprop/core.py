"""The driver core: what every driver builds on the pullback and the push-forward.

Every derivative jaxprop computes goes through two functions of ``jaxprop.wiring``, beside
the rule sets they enter:

* ``wiring.pullback``: f runs forward under the ``"vjp"`` rule set; the returned linear map
  ``out_bar -> primals_bar`` runs our VJP rules backwards (reverse mode).
* ``wiring.push_forward``: f runs forward once under the ``"jvp"`` rule set; the returned
  linear map ``*tangents -> out_dot`` pushes tangents through our JVP rules (forward mode).

``jaxprop.reverse``, ``jaxprop.forward``, the explainer's capture and compare's pipelines call
them; nothing else enters a rule set to differentiate. This module is what the drivers share
around them: argnums, the checks of f's arguments and output, f traced into gates once, the
jitted and cached driver, and the Jacobian built one standard-basis vector at a time: reverse
mode pulls back the output basis (one VJP per output element, giving rows), forward mode
pushes forward the input basis (one JVP per input element, giving columns). The basis is
never held whole when a chunk size is given: ``lax.map(..., batch_size=chunk)`` vmaps one
chunk of it at a time.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxprop import wiring
from jaxprop.tracer import gated

DEFAULT_MAX_BYTES = 2**30
"""Largest Jacobian (1 GiB) that ``jacobian`` builds unless ``max_bytes`` says otherwise."""


def check_tangents(who: str, primals: tuple, tangents: tuple) -> None:
    """Raises, as ``jax.jvp`` does, unless the tangents match the primals one for one in
    structure, shape (ValueError) and dtype (TypeError)."""
    if len(tangents) != len(primals):
        raise ValueError(f"{who}: got {len(primals)} primals but {len(tangents)} tangents; "
                         "give one tangent per primal")
    for i, (primal, tangent) in enumerate(zip(primals, tangents)):
        if jax.tree.structure(primal) != jax.tree.structure(tangent):
            raise ValueError(f"{who}: tangent {i} has the structure "
                             f"{jax.tree.structure(tangent)}; primal {i} has "
                             f"{jax.tree.structure(primal)}")
        for p, t in zip(jax.tree.leaves(primal), jax.tree.leaves(tangent)):
            if jnp.shape(p) != jnp.shape(t):
                raise ValueError(f"{who}: a tangent of shape {jnp.shape(t)} for primal {i} "
                                 f"of shape {jnp.shape(p)}; they must match")
            if jnp.result_type(p) != jnp.result_type(t):
                raise TypeError(f"{who}: a tangent of dtype {jnp.result_type(t)} for primal "
                                f"{i} of dtype {jnp.result_type(p)}; they must match")


def push_forward_by_pullbacks(f: Callable, *primals, has_aux: bool = False):
    """``wiring.push_forward`` built from two pullbacks ("inefficient but elegant").

    The pullback u -> J^T u of f, through our VJP rules, is linear in u, so pulling back
    through it, at any u, gives its transpose v -> J v. Returns ``(out, push, aux)`` as
    ``wiring.push_forward`` does.
    """
    out, pull, aux = wiring.pullback(f, *primals, has_aux=has_aux)
    _, pull_of_pull, _ = wiring.pullback(pull, jax.tree.map(jnp.zeros_like, out))

    def push(*tangents):
        return pull_of_pull(tangents)[0]

    return out, push, aux


def push_basis(push: Callable, dyn: tuple, chunk_size: int | None, dtype=None):
    """``push(*e_j)`` for every standard-basis vector e_j of the inputs ``dyn``, stacked
    (an output [n, ...] per leaf of push's result), ``chunk_size`` at a time: forward
    mode's columns of the Jacobian. Each e_j has its leaf's dtype (as a tangent must); the
    result is cast to ``dtype`` where given."""
    flat, unravel = ravel(dyn)
    return map_basis(lambda e: _cast(push(*unravel(e)), dtype), flat.size, flat.dtype,
                     chunk_size)


def pull_basis(pull: Callable, out, chunk_size: int | None, dtype=None):
    """``pull(e_i)`` for every standard-basis vector e_i of the output ``out``, stacked, one
    row of the Jacobian each (reverse mode's rows), ``chunk_size`` at a time. Each e_i has
    its output leaf's dtype (as a cotangent must); the result is cast to ``dtype`` where
    given."""
    flat, unravel = ravel(out)
    return map_basis(lambda e: _cast(pull(unravel(e)), dtype), flat.size, flat.dtype,
                     chunk_size)


def _cast(tree, dtype):
    return tree if dtype is None else jax.tree.map(lambda a: a.astype(dtype), tree)


def unravel_like(vector, tree):
    """``vector`` (one entry per element of ``tree``) in the structure and dtype of ``tree``:
    a scalar f's pushed basis, one row of its Jacobian, is its gradient shaped so."""
    flat, unravel = ravel(tree)
    return unravel(vector.astype(flat.dtype))


def normalize_argnums(argnums: int | Sequence[int], nargs: int, who: str) -> tuple[int, ...]:
    """Returns argnums as a tuple of non-negative ints, or raises naming the bad one."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(i, int) for i in nums):
        raise TypeError(
            f"{who}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}"
        )
    for i in nums:
        if not -nargs <= i < nargs:
            raise ValueError(
                f"{who}: argnums {i} is out of range for f called with {nargs} positional arguments"
            )
    nums = tuple(i % nargs for i in nums)
    if len(set(nums)) != len(nums):
        raise ValueError(f"{who}: argnums {argnums!r} names the same argument twice")
    return nums


def split_args(f: Callable, args: tuple, argnums: tuple[int, ...], kwargs=None):
    """Returns ``(f_dyn, dyn)``: f as a function of the differentiated arguments only (the
    other arguments, and the keyword arguments, passed to f as they are)."""
    dyn = tuple(args[i] for i in argnums)
    kwargs = kwargs or {}

    def f_dyn(*new):
        full = list(args)
        for i, a in zip(argnums, new):
            full[i] = a
        return f(*full, **kwargs)

    return f_dyn, dyn


def prepare(who: str, f: Callable, args: tuple, argnums, kwargs=None, *,
            allow_jax_rules: bool = False, has_aux: bool = False, scalar: str | None = None,
            allow_int: bool | None = None, forward: bool = False):
    """The prologue of every driver: checked argnums, f of the differentiated args traced
    into gates (``jaxprop.gated``) once, those args.

    f's output is checked from the trace before anything runs: with ``has_aux`` it must be a
    pair; with ``scalar`` (the alternative to name) a real floating-point scalar. With
    ``allow_int`` (``jax.grad``'s; None for a driver that does not take it), integer and
    boolean leaves are held as they are and only the floating-point ones are differentiated.
    A ``forward`` driver refuses a ``custom_vjp`` function on the derivative's path.

    Returns ``(f_dyn, dyn, fill)``: ``fill(grads, lead=())`` puts a float0 zero gradient of
    shape ``lead + leaf.shape`` back in each integer leaf's place, as ``jax.grad`` does
    (the identity without ``allow_int``). Raises naming a bad argnums, a non-float argument
    or a bad output.
    """
    nums = normalize_argnums(argnums, len(args), who)
    f_dyn, dyn = split_args(f, args, nums, kwargs)
    check_differentiable(who, dyn, nums, allow_int)
    fill = _no_fill
    if allow_int:
        f_dyn, dyn, fill = without_ints(f_dyn, dyn)
    run, out = gated(f_dyn, allow_jax_rules=allow_jax_rules).runner(
        *dyn, forward_mode=who if forward else None)
    out, _ = split_aux(who, out, has_aux)
    if scalar is not None:
        check_scalar(who, out, scalar)
    return run, dyn, fill


def _no_fill(grads, lead=(), float0=True):
    return grads


def _is_int(leaf) -> bool:
    return not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


def without_ints(f_dyn: Callable, dyn: tuple):
    """``(f_floats, floats, fill)``: f_dyn as a function of the floating-point leaves of
    ``dyn`` only (its integer leaves held as they are), and ``fill(grads, lead=())``, which
    puts a float0 zero of shape ``lead + leaf.shape`` in each integer leaf's place of the
    gradients of those floats, as ``jax.grad(..., allow_int=True)`` returns them (zeros of
    the leaf's own dtype with ``float0=False``, as ``jax.jacrev`` returns them)."""
    leaves, tree = jax.tree.flatten(dyn)
    ints = [_is_int(leaf) for leaf in leaves]
    floats = tuple(leaf for leaf, i in zip(leaves, ints) if not i)

    def merge(parts, for_int: Callable):
        rest = iter(parts)
        return tree.unflatten([for_int(leaf) if i else next(rest)
                               for leaf, i in zip(leaves, ints)])

    def f_floats(*new):
        return f_dyn(*merge(new, lambda leaf: leaf))

    def fill(grads, lead=(), float0=True):
        return merge(grads, lambda leaf: np.zeros(
            tuple(lead) + jnp.shape(leaf),
            jax.dtypes.float0 if float0 else jnp.result_type(leaf)))

    return f_floats, floats, fill


def check_grad_options(who: str, holomorphic: bool = False, reduce_axes=()) -> None:
    """``jax.grad``'s other arguments, refused as JAX refuses them, in our words."""
    if holomorphic:
        raise TypeError(
            f"{who}: holomorphic=True differentiates a complex function of complex arguments; "
            "jaxprop's rules are written for real numbers and refuse complex arguments: pass "
            "the real and imaginary parts as two real arguments")
    if reduce_axes:
        raise NotImplementedError(
            f"{who}: reduce_axes={reduce_axes!r} is not supported: JAX removed it (jax.grad "
            "raises NotImplementedError for it too); sum over the named axis inside f, e.g. "
            "with jax.lax.psum")


def is_python_constant(x) -> bool:
    """Python numbers, strings and None: what a driver passes to f as a constant."""
    return x is None or isinstance(x, (bool, int, float, complex, str))


class Jitted:
    """``jax.jit`` of a driver, with the Python constants among the arguments made static.

    ``jax.grad(f)(x, 2)`` hands f a Python 2, a constant; a jitted driver would trace it into
    an int32 array, which no gate takes and which a string cannot become. So each Python
    number, string or None outside ``argnums`` (positional or keyword) is a static argument,
    baked into the program (one compile per value, as for any static argument of
    ``jax.jit``).
    """

    def __init__(self, fn: Callable, argnums, who: str):
        self._fn, self._argnums, self._who = fn, argnums, who
        self._jitted: dict[tuple, Callable] = {}
        functools.update_wrapper(self, fn)

    def _for(self, args: tuple, kwargs: dict):
        nums = normalize_argnums(self._argnums, len(args), self._who)
        static = tuple(
            i for i, a in enumerate(args) if i not in nums and is_python_constant(a)
        )
        names = tuple(sorted(k for k, v in kwargs.items() if is_python_constant(v)))
        if (static, names) not in self._jitted:
            self._jitted[static, names] = jax.jit(self._fn, static_argnums=static,
                                                  static_argnames=names)
        return self._jitted[static, names]

    def __call__(self, *args, **kwargs):
        return self._for(args, kwargs)(*args, **kwargs)

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` for these arguments, for XLA's cost and memory analysis."""
        return self._for(args, kwargs).lower(*args, **kwargs)


def value_and_grad_fn(who: str, f: Callable, argnums, has_aux: bool, allow_jax_rules: bool,
                      gradient: Callable, scalar: str, forward: bool = False,
                      allow_int: bool = False) -> Callable:
    """``(*args, **kwargs) -> (f(*args), df/d args[argnums])`` for scalar f, as
    ``jax.value_and_grad`` returns it (``((out, aux), grads)`` with ``has_aux``).

    ``gradient(f_dyn, dyn, has_aux) -> (out, grads, aux)`` is the mode's own part: a pullback
    of 1 (reverse) or the input basis pushed forward (forward). ``scalar`` names what to use
    for a non-scalar f; ``forward`` refuses a ``custom_vjp`` function and ``allow_int`` gives
    integer inputs a float0 zero gradient (see :func:`prepare`).
    """

    def value_and_grad_f(*args, **kwargs):
        f_dyn, dyn, fill = prepare(who, f, args, argnums, kwargs,
                                   allow_jax_rules=allow_jax_rules, has_aux=has_aux,
                                   scalar=scalar, allow_int=allow_int, forward=forward)
        out, grads, aux = gradient(f_dyn, dyn, has_aux)
        grads = fill(grads)
        grads = grads[0] if isinstance(argnums, int) else grads
        return ((out, aux) if has_aux else out), grads

    return value_and_grad_f


def grad_driver(value_and_grad_f: Callable, argnums, has_aux: bool, who: str) -> Jitted:
    """The jitted ``grad`` of a driver's ``value_and_grad_f``: the gradients alone
    (``(grads, aux)`` with ``has_aux``, as ``jax.grad``)."""

    def grad_f(*args, **kwargs):
        value, grads = value_and_grad_f(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return Jitted(grad_f, argnums, who)


_DRIVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cached_driver(f: Callable, key: tuple, build: Callable[[], Jitted]) -> Jitted:
    """The driver built by ``build()`` for ``f`` and ``key``, built once and kept as long as f
    lives: making ``jaxprop.reverse.grad(f)`` again in a loop compiles nothing again."""
    try:
        per_f = _DRIVERS.setdefault(f, {})
    except TypeError:  # not weakly referable
        return build()
    try:
        if key not in per_f:
            per_f[key] = build()
        return per_f[key]
    except TypeError:  # an unhashable option
        return build()


def check_differentiable(who: str, dyn: tuple, argnums: tuple[int, ...],
                         allow_int: bool | None = None) -> None:
    """Raises unless every leaf of ``dyn`` is real floating point (or, with ``allow_int``,
    an integer); ``allow_int=False`` (a driver that takes it) names it in the message."""
    for i, arg in zip(argnums, dyn):
        for leaf in jax.tree.leaves(arg):
            dtype = jnp.result_type(leaf)
            if jnp.issubdtype(dtype, jnp.complexfloating):
                raise TypeError(
                    f"{who}: argument {i} has a leaf of dtype {dtype}; jaxprop's rules are "
                    "written for real numbers, so complex arguments are not differentiated: "
                    "pass the real and imaginary parts as two real arguments")
            if not jnp.issubdtype(dtype, jnp.floating) and not allow_int:
                hint = ("" if allow_int is None else
                        ", or pass allow_int=True for a zero gradient, as in JAX")
                raise TypeError(
                    f"{who}: argument {i} has a leaf of dtype {dtype}; only floating-point "
                    f"arguments can be differentiated (check argnums{hint})"
                )


def check_scalar(who: str, out, alternative: str) -> None:
    """Raises, as ``jax.grad`` does, unless ``out`` is one real floating-point scalar."""
    leaves, tree = jax.tree.flatten(out)
    if not (jax.tree_util.treedef_is_leaf(tree) and leaves and np.shape(leaves[0]) == ()):
        shapes = jax.tree.map(jnp.shape, out)
        raise TypeError(
            f"{who}: f must return a scalar, got {shapes}; use {alternative} for vector outputs"
        )
    dtype = jnp.result_type(leaves[0])
    if not jnp.issubdtype(dtype, jnp.floating):
        why = ("jaxprop's rules are written for real numbers (jax.grad would need "
               "holomorphic=True)" if jnp.issubdtype(dtype, jnp.complexfloating) else
               "an integer or boolean output has no gradient")
        raise TypeError(f"{who}: f must return a real floating-point scalar, got dtype "
                        f"{dtype}: {why} (jax.grad refuses it too)")


def split_aux(who: str, out, has_aux: bool):
    """``(out, aux)`` of f's result; with ``has_aux`` f must return a pair."""
    if not has_aux:
        return out, None
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"{who}: with has_aux=True f must return a pair (output, aux); got "
                        f"{type(out).__name__}")
    return out[0], out[1]


def map_basis(fn: Callable, size: int, dtype, chunk_size: int | None):
    """Returns ``stack([fn(e_i) for i in range(size)])`` for the standard basis e_i.

    With ``chunk_size`` None or at least ``size`` this is one vmap over the whole basis, the
    way ``jax.jacfwd``/``jax.jacrev`` do it; otherwise ``chunk_size`` basis vectors at a time.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")

    def apply(i):
        return fn(jax.nn.one_hot(i, size, dtype=dtype))

    indices = jnp.arange(size)
    if chunk_size is None or chunk_size >= size:
        return jax.vmap(apply)(indices)
    return lax.map(apply, indices, batch_size=chunk_size)


def _nbytes_text(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB ({nbytes / 1e9:,.1f} GB)"


def check_budget(who: str, m: int, n: int, dtype, max_bytes: int | None, instead: str) -> None:
    """Refuses, before anything is allocated, a Jacobian [m, n] larger than ``max_bytes``."""
    if max_bytes is None:
        return
    nbytes = m * n * np.dtype(dtype).itemsize
    if nbytes > max_bytes:
        raise MemoryError(
            f"{who}: the full Jacobian would be {m:,} x {n:,} {np.dtype(dtype).name} entries = "
            f"{_nbytes_text(nbytes)}, over the budget of {_nbytes_text(max_bytes)}. "
            f"Use {instead} to apply it without forming it, or pass max_bytes= to allow it."
        )


def jacobian_size(out, dyn: tuple):
    """Returns ``(m, n, dtype)`` of the Jacobian [m, n] from output ``out`` to inputs ``dyn``."""
    m = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(out))
    n = sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(dyn))
    dtype = jnp.result_type(*jax.tree.leaves(out), *jax.tree.leaves(dyn))
    return m, n, dtype


def unflatten_jacobian(jac, out, dyn: tuple, single: bool):
    """Splits ``jac`` [m, n] into JAX's layout: an out-tree of in-trees of blocks.

    Each block has shape ``out_leaf.shape + in_leaf.shape``, as ``jax.jacrev`` returns.
    """
    inner = dyn[0] if single else dyn
    out_leaves, out_tree = jax.tree.flatten(out)
    in_leaves, in_tree = jax.tree.flatten(inner)
    out_sizes = [int(np.prod(leaf.shape)) for leaf in out_leaves]
    in_sizes = [int(np.prod(jnp.shape(leaf))) for leaf in in_leaves]
    rows = np.cumsum([0] + out_sizes)
    cols = np.cumsum([0] + in_sizes)
    blocks = []
    for k, o in enumerate(out_leaves):
        per_in = []
        for j, a in enumerate(in_leaves):
            block = jac[rows[k] : rows[k + 1], cols[j] : cols[j + 1]]
            per_in.append(block.reshape(tuple(o.shape) + tuple(jnp.shape(a))))
        blocks.append(in_tree.unflatten(per_in))
    return out_tree.unflatten(blocks)


def ravel(tree):
    """Flattens a pytree into one vector (``jax.flatten_util.ravel_pytree``)."""
    return ravel_pytree(tree)


def jacobian_shape(f_dyn: Callable, dyn: tuple):
    """Returns ``(out_struct, m, n, dtype)`` for the Jacobian of ``f_dyn`` at ``dyn``.

    Traces f once with ``jax.eval_shape``; nothing runs and nothing is allocated.
    """
    out = jax.eval_shape(f_dyn, *dyn)
    return (out, *jacobian_size(out, dyn))


def jacobian_driver(who: str, f: Callable, argnums, chunk_size: int | None,
                    max_bytes: int | None, linear_map: Callable, rows: bool, instead: str,
                    has_aux: bool = False, allow_jax_rules: bool = False,
                    allow_int: bool | None = None):
    """A jitted full Jacobian of f, built one standard-basis vector at a time.

    Args:
      who: the driver's name, for messages.
      f, argnums: the function and the arguments differentiated.
      chunk_size: basis vectors at once (None: one vmap of them all).
      max_bytes: refuse a larger Jacobian at trace time (None: no limit).
      linear_map: ``(f, *primals, has_aux) -> (out, apply, aux)``: ``wiring.pullback``
        (``rows=True``, reverse mode: each output basis vector gives a row J^T e_i), or
        ``wiring.push_forward`` or :func:`push_forward_by_pullbacks` (``rows=False``, forward
        mode: each input basis vector gives a column J e_j).
      rows: whether ``linear_map`` is a pullback.
      instead: what to use to apply J without forming it, for the over-budget message.
      has_aux: f returns (output, aux); the driver returns (jacobian, aux).
      allow_jax_rules: see ``jaxprop.gated``.
      allow_int: integer leaves get zero blocks of their dtype, as in ``jax.jacrev``.
    """
    def jacobian_f(*args, **kwargs):
        f_dyn, dyn, fill = prepare(who, f, args, argnums, kwargs,
                                   allow_jax_rules=allow_jax_rules, has_aux=has_aux,
                                   allow_int=allow_int, forward=linear_map is wiring.push_forward)
        out, apply, aux = linear_map(f_dyn, *dyn, has_aux=has_aux)  # traced, not run:
        m, n, dtype = jacobian_size(out, dyn)  # nothing is allocated yet
        check_budget(who, m, n, dtype, max_bytes, instead)
        if rows:
            jac = pull_basis(lambda u: ravel(apply(u))[0], out, chunk_size, dtype)
        else:
            jac = push_basis(lambda *t: ravel(apply(*t))[0], dyn, chunk_size, dtype).T
        single = isinstance(argnums, int)
        if fill is _no_fill:
            jac = unflatten_jacobian(jac, out, dyn, single)
        else:  # blocks per float leaf, then zero blocks in the integer leaves' places
            out_leaves, out_tree = jax.tree.flatten(out)
            per_out = out_tree.flatten_up_to(unflatten_jacobian(jac, out, dyn, False))
            filled = [fill(blocks, jnp.shape(o), float0=False)
                      for o, blocks in zip(out_leaves, per_out)]
            jac = out_tree.unflatten([g[0] if single else g for g in filled])
        return (jac, aux) if has_aux else jac

    return Jitted(jacobian_f, argnums, who)
