"""Forward against reverse mode, measured: six Jacobian pipelines, their time, FLOPs, memory.

The lecture's claims become measurements a user can rerun on their own functions:

* reverse mode gets the "grad of scalar output w.r.t. all vector inputs" with one VJP per
  output, so it wins when the Jacobian is wide (n >> m);
* forward mode gets "grads of scalar input w.r.t. vector outputs" with one JVP per input, so
  it wins when the Jacobian is tall (n << m), and stores no activations;
* forward mode from "two calls to reverse-mode AD (inefficient but elegant)";
* a 4096-wide layer's Jacobian "takes 256 GB", so it is never formed.

For example::

  from jaxprop import compare
  fns = compare.jacobian_pipelines(f, f_jnp, argnums=0)  # six jitted Jacobians
  summary = compare.run_compare(compare.load_config(quick=True))
"""

from jaxprop.compare.cases import (
    Case,
    chain_case,
    deep_case,
    two_layer_loss_case,
    two_layer_scores_case,
)
from jaxprop.compare.config import DEFAULTS, QUICK, SECTIONS, load_config
from jaxprop.compare.measure import Cost, compile_fn, cost_of, flops_of, memory_of
from jaxprop.compare.pipelines import (
    MODE,
    PIPELINES,
    jacobian_pipelines,
    jvp_from_vjp_jacobian,
)
from jaxprop.compare.run import markdown_tables, run_compare
from jaxprop.compare.sweeps import crossover, max_rel_error, measure_case

__all__ = [
    "Case",
    "Cost",
    "DEFAULTS",
    "MODE",
    "PIPELINES",
    "QUICK",
    "SECTIONS",
    "chain_case",
    "compile_fn",
    "cost_of",
    "crossover",
    "deep_case",
    "flops_of",
    "jacobian_pipelines",
    "jvp_from_vjp_jacobian",
    "load_config",
    "markdown_tables",
    "max_rel_error",
    "measure_case",
    "memory_of",
    "run_compare",
    "two_layer_loss_case",
    "two_layer_scores_case",
]
