"""Forward against reverse mode, measured: six Jacobian pipelines, their time, FLOPs, memory.

The lecture's claims become measurements a user can rerun on their own functions:

* reverse mode gets the "grad of scalar output w.r.t. all vector inputs" with one VJP per
  output, so it wins when the Jacobian is wide (n >> m);
* forward mode gets "grads of scalar input w.r.t. vector outputs" with one JVP per input, so
  it wins when the Jacobian is tall (n << m), and stores no activations;
* forward mode from "two calls to reverse-mode AD (inefficient but elegant)";
* a 4096-wide layer's Jacobian "takes 256 GB", so it is never formed.

Modules: ``pipelines`` (the six pipelines, one registry entry each), ``problems`` (the functions
differentiated, each with its plain-jnp twin), ``measure`` (FLOPs, memory, interleaved
times), ``sections`` (width, depth, two-layer, cheap gradient, the big Jacobian),
``plan`` (the settings), ``report`` (CSVs and tables), ``figures``, ``advice``
(``jaxprop.advise``).

For example::

  from jaxprop import compare
  fns = compare.jacobian_pipelines(f, f_jnp, argnums=0)  # six jitted Jacobians
  summary = compare.run_compare(compare.load_config(quick=True))

Names are imported lazily, so ``jaxprop.compare.plan`` loads without JAX.
"""

from typing import TYPE_CHECKING

from jaxprop._lazy import exports, typed_exports

if TYPE_CHECKING:  # the public names, once: typed_exports reads them, mypy the types
    from jaxprop.compare.advice import Advice as Advice
    from jaxprop.compare.advice import advise as advise
    from jaxprop.compare.measure import Cost as Cost
    from jaxprop.compare.measure import compile_fn as compile_fn
    from jaxprop.compare.measure import cost_of as cost_of
    from jaxprop.compare.measure import flops_of as flops_of
    from jaxprop.compare.measure import memory_of as memory_of
    from jaxprop.compare.pipelines import PIPELINES as PIPELINES
    from jaxprop.compare.pipelines import JacobianPipeline as JacobianPipeline
    from jaxprop.compare.pipelines import jacobian_pipelines as jacobian_pipelines
    from jaxprop.compare.pipelines import jvp_from_vjp_jacobian as jvp_from_vjp_jacobian
    from jaxprop.compare.plan import DEFAULTS as DEFAULTS
    from jaxprop.compare.plan import QUICK as QUICK
    from jaxprop.compare.plan import SECTIONS as SECTIONS
    from jaxprop.compare.plan import Plan as Plan
    from jaxprop.compare.plan import load_config as load_config
    from jaxprop.compare.problems import Problem as Problem
    from jaxprop.compare.problems import chain_case as chain_case
    from jaxprop.compare.problems import deep_case as deep_case
    from jaxprop.compare.problems import two_layer_loss_case as two_layer_loss_case
    from jaxprop.compare.problems import two_layer_scores_case as two_layer_scores_case
    from jaxprop.compare.report import markdown_tables as markdown_tables
    from jaxprop.compare.report import run_compare as run_compare
    from jaxprop.compare.sections import crossover as crossover
    from jaxprop.compare.sections import max_rel_error as max_rel_error
    from jaxprop.compare.sections import measure_case as measure_case

_EXPORTS = typed_exports(__file__)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
