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

from jaxprop._lazy import exports

_EXPORTS = {
    "Advice": "jaxprop.compare.advice",
    "advise": "jaxprop.compare.advice",
    "Cost": "jaxprop.compare.measure",
    "compile_fn": "jaxprop.compare.measure",
    "cost_of": "jaxprop.compare.measure",
    "flops_of": "jaxprop.compare.measure",
    "memory_of": "jaxprop.compare.measure",
    "PIPELINES": "jaxprop.compare.pipelines",
    "JacobianPipeline": "jaxprop.compare.pipelines",
    "jacobian_pipelines": "jaxprop.compare.pipelines",
    "jvp_from_vjp_jacobian": "jaxprop.compare.pipelines",
    "DEFAULTS": "jaxprop.compare.plan",
    "QUICK": "jaxprop.compare.plan",
    "SECTIONS": "jaxprop.compare.plan",
    "Plan": "jaxprop.compare.plan",
    "load_config": "jaxprop.compare.plan",
    "Problem": "jaxprop.compare.problems",
    "chain_case": "jaxprop.compare.problems",
    "deep_case": "jaxprop.compare.problems",
    "two_layer_loss_case": "jaxprop.compare.problems",
    "two_layer_scores_case": "jaxprop.compare.problems",
    "markdown_tables": "jaxprop.compare.report",
    "run_compare": "jaxprop.compare.report",
    "crossover": "jaxprop.compare.sections",
    "max_rel_error": "jaxprop.compare.sections",
    "measure_case": "jaxprop.compare.sections",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
