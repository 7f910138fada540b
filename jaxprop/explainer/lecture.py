"""The lecture's worked examples as functions built from gates (``jaxprop.explain`` runs them).

* ``simple``: f(x, y, z) = (x + y) z.
* ``sigmoid_circuit``: the neuron 1 / (1 + e^-(w0 x0 + w1 x1 + w2)) as the slide's circuit of
  mul, add, *-1, exp, +1 and 1/x gates.
* ``sigmoid_neuron``: the same neuron with one sigmoid gate.
* ``relu_vector``: relu(x) elementwise.
* ``matmul``: y = x w.
* ``two_layer``: softmax loss of the two-layer ReLU net plus 0.1 L2.
"""

from __future__ import annotations

from jaxprop import gates
from jaxprop.losses import objective, softmax_loss
from jaxprop.models import two_layer_scores

__all__ = ["simple", "sigmoid_circuit", "sigmoid_neuron", "relu_vector", "matmul",
           "two_layer"]


def simple(x, y, z):
    """(x + y) z: an add gate (q = x + y), then a mul gate (f = q z)."""
    return gates.mul(gates.add(x, y), z)


def sigmoid_circuit(w0, x0, w1, x1, w2):
    """1 / (1 + e^-(w0 x0 + w1 x1 + w2)), gate by gate as the slide draws it."""
    s = gates.add(gates.add(gates.mul(w0, x0), gates.mul(w1, x1)), w2)
    return gates.reciprocal(gates.add(gates.exp(gates.mul(s, -1.0)), 1.0))


def sigmoid_neuron(w0, x0, w1, x1, w2):
    """The same neuron with one sigmoid gate: local gradient (1 - s) s."""
    return gates.sigmoid(gates.add(gates.add(gates.mul(w0, x0), gates.mul(w1, x1)), w2))


def relu_vector(x):
    """relu(x) elementwise; its Jacobian is diagonal and never formed."""
    return gates.relu(x)


def matmul(x, w):
    """y = x w, x [N, D], w [D, M]."""
    return gates.matmul(x, w)


two_layer = objective(two_layer_scores, softmax_loss, reg=0.1)
"""L = softmax_loss(relu(x W1 + b1) W2 + b2, y) + 0.1 R(W1, W2): the whole pipeline."""
