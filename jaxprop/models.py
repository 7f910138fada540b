"""The lecture's classifiers as pure functions of a dict of parameters: the linear
classifier, the two-layer net and CS231n's three-layer ConvNet.

Parameters are plain dicts of arrays with the course names (``W``/``b``,
``W1``/``b1``/``W2``/``b2``, or the ConvNet's ``W1`` ... ``b3`` with ``gamma1``/``beta1``,
``gamma2``/``beta2`` for its batch norm), so optax updates them as they are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprop import gates, reference

__all__ = ["Model", "linear_init", "linear_scores", "two_layer_init", "two_layer_scores",
           "convnet_init", "convnet_scores", "image_shape", "MODELS", "resolve",
           "rnn_step_forward", "rnn_forward", "lstm_step_forward", "lstm_forward",
           "word_embedding_forward", "temporal_affine_forward", "temporal_softmax_loss",
           "recurrent_init", "rnn_scores", "lstm_scores"]


def _check_input(name: str, x, w_name: str, w) -> None:
    x_shape, w_shape = jnp.shape(x), jnp.shape(w)
    if len(x_shape) != 2:
        raise ValueError(f"{name}: x must have rank 2, [N, D]; got shape {x_shape}")
    if x_shape[1] != w_shape[0]:
        raise ValueError(
            f"{name}: input width {x_shape[1]} (x {x_shape}) does not match "
            f"params[{w_name!r}] {w_shape}, which expects D={w_shape[0]}"
        )


def _check_params(name: str, params, required: tuple[str, ...], optional=()) -> None:
    missing = [k for k in required if k not in params]
    unknown = [k for k in params if k not in required and k not in optional]
    if missing or unknown:
        problem = f"lack {missing}" if missing else f"have unknown keys {unknown}"
        raise ValueError(
            f"{name}: params {problem}; expected keys {list(required) + list(optional)}"
        )


def _check_shape(name: str, key: str, array, expected: tuple[int, ...]) -> None:
    if tuple(jnp.shape(array)) != expected:
        raise ValueError(
            f"{name}: params[{key!r}] has shape {tuple(jnp.shape(array))}; expected {expected}"
        )


def _normal(key, shape: tuple[int, ...], dtype):
    """``jax.random.normal(key, shape)``, the same numbers, drawn flat and reshaped: XLA:CPU
    compiles the flat draw several times faster (0.18 s against 0.81 s for [128, 10]), and
    a run compiles its initialisation at start-up."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def linear_init(key, in_dim: int, num_classes: int, weight_scale: float = 1e-3,
                dtype=jnp.float32, bias: bool = True) -> dict:
    """Parameters of the linear classifier, as CS231n initialises them.

    Args:
      key: a ``jax.random`` key.
      in_dim: D, the input width (with the bias trick, the data's trailing 1 included).
      num_classes: C.
      weight_scale: standard deviation of the Gaussian weights.
      dtype: floating dtype of the parameters.
      bias: whether to keep a separate bias ``b``. With the bias trick the data carries a
        constant-1 column and the last row of ``W`` is the bias, so pass ``bias=False``, as
        CS231n's ``LinearClassifier`` does.

    Returns:
      ``{"W": [D, C], "b": [C]}`` with ``b`` zero, or ``{"W": [D, C]}`` without a bias.
    """
    w = weight_scale * _normal(key, (in_dim, num_classes), dtype)
    return {"W": w, "b": jnp.zeros((num_classes,), dtype)} if bias else {"W": w}


def linear_scores(params: dict, x):
    """Linear classifier: s = x W + b, scores [N, C] for inputs x [N, D].

    A matmul gate, then an add gate whose bias gradient sums over the batch. Without a ``b``
    in ``params`` (the bias trick: the bias is the last row of W), just s = x W.
    """
    _check_params("linear_scores", params, ("W",), optional=("b",))
    _check_input("linear_scores", x, "W", params["W"])
    if "b" in params:
        _check_shape("linear_scores", "b", params["b"], (jnp.shape(params["W"])[1],))
    scores = gates.matmul(x, params["W"])
    return gates.add(scores, params["b"]) if "b" in params else scores


def two_layer_init(key, in_dim: int, hidden_dim: int, num_classes: int,
                   weight_scale: float | None = None, dtype=jnp.float32) -> dict:
    """Parameters of the two-layer ReLU net.

    Args:
      key: a ``jax.random`` key.
      in_dim: D.
      hidden_dim: H.
      num_classes: C.
      weight_scale: standard deviation of both weight matrices, as in CS231n's
        ``TwoLayerNet(std=...)``. ``None`` uses He initialisation, sqrt(2 / fan_in).
      dtype: floating dtype of the parameters.

    Returns:
      ``{"W1": [D, H], "b1": [H], "W2": [H, C], "b2": [C]}``, with zero biases.
    """
    k1, k2 = jax.random.split(key)
    s1 = weight_scale if weight_scale is not None else (2.0 / in_dim) ** 0.5
    s2 = weight_scale if weight_scale is not None else (2.0 / hidden_dim) ** 0.5
    return {
        "W1": s1 * _normal(k1, (in_dim, hidden_dim), dtype),
        "b1": jnp.zeros((hidden_dim,), dtype),
        "W2": s2 * _normal(k2, (hidden_dim, num_classes), dtype),
        "b2": jnp.zeros((num_classes,), dtype),
    }


def two_layer_scores(params: dict, x):
    """Two-layer net: s = relu(x W1 + b1) W2 + b2, scores [N, C] for x [N, D]."""
    _check_params("two_layer_scores", params, ("W1", "b1", "W2", "b2"))
    _check_input("two_layer_scores", x, "W1", params["W1"])
    (_, hidden), (_, classes) = jnp.shape(params["W1"]), jnp.shape(params["W2"])
    _check_shape("two_layer_scores", "W2", params["W2"], (hidden, classes))
    _check_shape("two_layer_scores", "b1", params["b1"], (hidden,))
    _check_shape("two_layer_scores", "b2", params["b2"], (classes,))
    h = gates.relu(gates.add(gates.matmul(x, params["W1"]), params["b1"]))
    return gates.add(gates.matmul(h, params["W2"]), params["b2"])


def image_shape(name: str, in_dim: int, channels: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the square images a row of ``in_dim`` pixels holds: ``H * H`` grey
    (C = 1, the digits' 8x8) or ``H * H * 3`` colour (C = 3, CIFAR-10's 32x32x3), or
    ``channels`` given."""
    for c in (1, 3) if channels is None else (channels,):
        side = math.isqrt(in_dim // c)
        if side * side * c == in_dim and side > 0:
            return c, side, side
    raise ValueError(
        f"{name}: takes square images flattened to rows of H*H (grey) or H*H*3 (colour) "
        f"pixels; a row of {in_dim} is neither (data.bias_trick adds a column: set it false)")


def _images(name: str, x, channels: int):
    """x as NCHW images: rows [N, H*W*C] (the datasets' layout, CIFAR's load_CIFAR10
    order, channel last) are reshaped and moved to [N, C, H, W]; 4-D x is taken as NCHW."""
    if jnp.ndim(x) == 4:
        return x
    if jnp.ndim(x) != 2:
        raise ValueError(f"{name}: x must be rows [N, D] or images [N, C, H, W]; got shape "
                         f"{jnp.shape(x)}")
    c, h, w = image_shape(name, jnp.shape(x)[1], channels)
    return gates.transpose(gates.reshape(x, (jnp.shape(x)[0], h, w, c)), (0, 3, 1, 2))


def convnet_init(key, image: tuple[int, int, int], num_classes: int, num_filters: int = 32,
                 filter_size: int = 7, hidden_dim: int = 100, weight_scale: float = 1e-3,
                 batchnorm: bool = False, dtype=jnp.float32) -> dict:
    """Parameters of CS231n's three-layer ConvNet, as its ``ThreeLayerConvNet`` draws them.

    Args:
      key: a ``jax.random`` key.
      image: ``(C, H, W)`` of one input image.
      num_classes: the number of classes.
      num_filters: F, the filters of the convolution.
      filter_size: the side of each (square) filter; the padding keeps H and W.
      hidden_dim: the width of the hidden affine layer.
      weight_scale: standard deviation of every weight.
      batchnorm: add spatial batch norm after the conv and batch norm after the hidden
        affine layer (gamma ones, beta zeros).
      dtype: floating dtype of the parameters.

    Returns:
      ``{"W1": [F, C, k, k], "b1": [F], "W2": [F*H/2*W/2, hidden], "b2": [hidden],
      "W3": [hidden, classes], "b3": [classes]}``, biases zero, with ``gamma1``/``beta1``
      [F] and ``gamma2``/``beta2`` [hidden] for batch norm.
    """
    c, h, w = image
    if h % 2 or w % 2:
        raise ValueError(f"convnet: the 2x2 max pool needs an even height and width; got "
                         f"images of {h}x{w}")
    k1, k2, k3 = jax.random.split(key, 3)
    pooled = num_filters * (h // 2) * (w // 2)
    params = {
        "W1": weight_scale * _normal(k1, (num_filters, c, filter_size, filter_size), dtype),
        "b1": jnp.zeros((num_filters,), dtype),
        "W2": weight_scale * _normal(k2, (pooled, hidden_dim), dtype),
        "b2": jnp.zeros((hidden_dim,), dtype),
        "W3": weight_scale * _normal(k3, (hidden_dim, num_classes), dtype),
        "b3": jnp.zeros((num_classes,), dtype),
    }
    if batchnorm:
        for i, width in ((1, num_filters), (2, hidden_dim)):
            params[f"gamma{i}"] = jnp.ones((width,), dtype)
            params[f"beta{i}"] = jnp.zeros((width,), dtype)
    return params


CONVNET_KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")
CONVNET_NORM_KEYS = ("gamma1", "beta1", "gamma2", "beta2")


def _max_pool_2x2(x):
    """2x2 max pooling with stride 2 over H and W of NCHW ``x``: each window's winner takes
    the gradient (the max_pool gate is a router; a tie goes to the first)."""
    return gates.max_pool(x, (1, 1, 2, 2), (1, 1, 2, 2))


def convnet_scores(params: dict, x, *, key=None, dropout_keep: float = 1.0):
    """CS231n's three-layer ConvNet: conv - ReLU - 2x2 max pool - affine - ReLU - affine.

    The conv has stride 1 and the padding that keeps the image's size. With ``gamma1`` in
    ``params``, spatial batch norm follows the conv and batch norm the hidden affine layer
    (each over the batch it is given, in training and at test time alike). With a ``key``
    (training) and ``dropout_keep < 1``, inverted dropout keeps each hidden unit with
    probability ``dropout_keep``; without a key (test time) nothing is dropped.

    Args:
      params: as ``convnet_init`` makes them.
      x: rows [N, H*W*C] (a dataset's layout) or images [N, C, H, W].
      key: a ``jax.random`` key for the dropout masks, or None.
      dropout_keep: the probability of keeping a hidden unit.

    Returns:
      scores [N, classes].
    """
    norm = "gamma1" in params
    _check_params("convnet_scores", params, CONVNET_KEYS + (CONVNET_NORM_KEYS if norm else ()))
    w1 = params["W1"]
    if jnp.ndim(w1) != 4 or jnp.shape(w1)[2] != jnp.shape(w1)[3] or jnp.shape(w1)[2] % 2 == 0:
        raise ValueError(f"convnet_scores: params['W1'] must be [F, C, k, k] with k odd; got "
                         f"shape {jnp.shape(w1)}")
    f, c, k, _ = jnp.shape(w1)
    x = _images("convnet_scores", x, c)
    if jnp.shape(x)[1] != c:
        raise ValueError(f"convnet_scores: images of {jnp.shape(x)[1]} channels (x "
                         f"{jnp.shape(x)}) do not match params['W1'] {jnp.shape(w1)}")
    pad = (k - 1) // 2
    a = gates.conv(x, w1, (1, 1), ((pad, pad), (pad, pad)),
                   dimension_numbers=("NCHW", "OIHW", "NCHW"))
    a = gates.add(a, gates.reshape(params["b1"], (f, 1, 1)))
    if norm:
        a = gates.spatial_batch_norm(a, params["gamma1"], params["beta1"])
    pooled = _max_pool_2x2(gates.relu(a))
    h = gates.add(gates.matmul(gates.reshape(pooled, (jnp.shape(x)[0], -1)), params["W2"]),
                  params["b2"])
    if norm:
        h = gates.batch_norm(h, params["gamma2"], params["beta2"])
    h = gates.relu(h)
    if key is not None and dropout_keep < 1:
        h = gates.dropout(h, dropout_keep, key)
    return gates.add(gates.matmul(h, params["W3"]), params["b3"])


# The course's recurrent layers (CS231n assignment 3), in plain JAX: the time loop is a
# ``lax.scan``, which jaxprop's tracer runs through the gates step by step (backprop through
# time is the same gates, in reverse, from the last step to the first), never unrolled.
# x is [N, T, D] (batch first, as the course has it); the scan runs over T.


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One step of the vanilla RNN: h_t = tanh(x_t Wx + h_{t-1} Wh + b).

    Shapes: x [N, D], prev_h [N, H], Wx [D, H], Wh [H, H], b [H] -> next_h [N, H].
    """
    return jnp.tanh(x @ Wx + prev_h @ Wh + b[None, :])


def rnn_forward(x, h0, Wx, Wh, b):
    """The vanilla RNN over a sequence: ``rnn_step_forward`` under ``lax.scan``.

    Shapes: x [N, T, D], h0 [N, H] -> h [N, T, H], the hidden state of every step.
    """
    def step(prev_h, x_t):
        next_h = rnn_step_forward(x_t, prev_h, Wx, Wh, b)
        return next_h, next_h

    _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step, CS231n's layout: a = x Wx + h Wh + b [N, 4H] split as i, f, o, g;
    i, f, o = sigmoid, g = tanh; c_t = f * c_{t-1} + i * g; h_t = o * tanh(c_t).

    Shapes: x [N, D], prev_h and prev_c [N, H], Wx [D, 4H], Wh [H, 4H], b [4H]
    -> (next_h, next_c), each [N, H].
    """
    hidden = jnp.shape(prev_h)[-1]
    a = x @ Wx + prev_h @ Wh + b[None, :]
    i = jax.nn.sigmoid(a[:, :hidden])
    f = jax.nn.sigmoid(a[:, hidden:2 * hidden])
    o = jax.nn.sigmoid(a[:, 2 * hidden:3 * hidden])
    g = jnp.tanh(a[:, 3 * hidden:])
    next_c = f * prev_c + i * g
    return o * jnp.tanh(next_c), next_c


def lstm_forward(x, h0, Wx, Wh, b):
    """The LSTM over a sequence: ``lstm_step_forward`` under ``lax.scan``, the cell state
    starting at zero (as in CS231n).

    Shapes: x [N, T, D], h0 [N, H] -> h [N, T, H].
    """
    def step(carry, x_t):
        next_h, next_c = lstm_step_forward(x_t, *carry, Wx, Wh, b)
        return (next_h, next_c), next_h

    _, hs = jax.lax.scan(step, (h0, jnp.zeros_like(h0)), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def word_embedding_forward(x, W):
    """Word embedding: each integer word index looks up its row of W (a gather; backward,
    each row of W adds up the gradients of the words that read it).

    Shapes: x [N, T] integers in [0, V), W [V, D] -> out [N, T, D].
    """
    return W[x]


def temporal_affine_forward(x, w, b):
    """The same affine layer at every time step: out[:, t] = x[:, t] w + b.

    Shapes: x [N, T, D], w [D, M], b [M] -> out [N, T, M].
    """
    return x @ w + b[None, None, :]


def temporal_softmax_loss(x, y, mask):
    """Softmax loss summed over time steps where ``mask`` is true, averaged over the batch
    (CS231n's: the sum over n and t of -mask log softmax(x[n, t])[y[n, t]], divided by N).

    Shapes: x [N, T, V] scores, y [N, T] integers in [0, V), mask [N, T] booleans -> scalar.
    """
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=2, keepdims=True))
    log_probs = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=2, keepdims=True))
    picked = jnp.take_along_axis(log_probs, y[:, :, None], axis=2)[:, :, 0]
    return -jnp.sum(jnp.where(mask, picked, 0.0)) / jnp.shape(x)[0]


RECURRENT_KEYS = ("Wx", "Wh", "b", "W_out", "b_out")


def recurrent_init(key, row_dim: int, hidden_dim: int, num_classes: int, cell: str = "rnn",
                   weight_scale: float | None = None, dtype=jnp.float32) -> dict:
    """Parameters of a sequence classifier: an RNN or LSTM over rows, then an affine layer.

    Args:
      key: a ``jax.random`` key.
      row_dim: D, the width of one step's input (a row of pixels).
      hidden_dim: H.
      num_classes: C.
      cell: ``"rnn"`` or ``"lstm"`` (whose Wx, Wh and b are four times wider: i, f, o, g).
      weight_scale: standard deviation of the weights; None: 1/sqrt(fan_in) each.
      dtype: floating dtype of the parameters.

    Returns:
      ``{"Wx": [D, G], "Wh": [H, G], "b": [G], "W_out": [H, C], "b_out": [C]}`` with G = H
      (RNN) or 4H (LSTM); biases zero.
    """
    width = 4 * hidden_dim if cell == "lstm" else hidden_dim
    k1, k2, k3 = jax.random.split(key, 3)

    def scale(fan_in):
        return weight_scale if weight_scale is not None else fan_in ** -0.5

    return {
        "Wx": scale(row_dim) * _normal(k1, (row_dim, width), dtype),
        "Wh": scale(hidden_dim) * _normal(k2, (hidden_dim, width), dtype),
        "b": jnp.zeros((width,), dtype),
        "W_out": scale(hidden_dim) * _normal(k3, (hidden_dim, num_classes), dtype),
        "b_out": jnp.zeros((num_classes,), dtype),
    }


def _rows(name: str, x, params):
    """x [N, R*D] as a sequence of R rows of D = Wx's height: [N, R, D]."""
    if jnp.ndim(x) == 3:
        return x
    row = jnp.shape(params["Wx"])[0]
    if jnp.ndim(x) != 2 or jnp.shape(x)[1] % row:
        raise ValueError(f"{name}: x must be [N, T*D] rows with D = {row} (params['Wx'] "
                         f"{jnp.shape(params['Wx'])}) or [N, T, D]; got shape {jnp.shape(x)}")
    return jnp.reshape(x, (jnp.shape(x)[0], -1, row))


def rnn_scores(params: dict, x):
    """Sequence classifier: an RNN reads x's rows (h_0 = 0), scores = h_T W_out + b_out.

    x [N, T*D] (each example's T rows of D, the 8x8 digits' 8 rows of 8 pixels) or
    [N, T, D] -> scores [N, C].
    """
    _check_params("rnn_scores", params, RECURRENT_KEYS)
    x = _rows("rnn_scores", x, params)
    h0 = jnp.zeros((jnp.shape(x)[0], jnp.shape(params["Wh"])[0]), x.dtype)
    h = rnn_forward(x, h0, params["Wx"], params["Wh"], params["b"])
    return h[:, -1] @ params["W_out"] + params["b_out"][None, :]


def lstm_scores(params: dict, x):
    """Sequence classifier: an LSTM reads x's rows (h_0 = c_0 = 0), scores = h_T W_out + b_out.

    x [N, T*D] or [N, T, D] -> scores [N, C].
    """
    _check_params("lstm_scores", params, RECURRENT_KEYS)
    x = _rows("lstm_scores", x, params)
    h0 = jnp.zeros((jnp.shape(x)[0], jnp.shape(params["Wh"])[0]), x.dtype)
    h = lstm_forward(x, h0, params["Wx"], params["Wh"], params["b"])
    return h[:, -1] @ params["W_out"] + params["b_out"][None, :]


@dataclasses.dataclass(frozen=True)
class Model:
    """A classifier: its parameters' initialiser, its scores built from gates, and its twin.

    Attributes:
      name: the name configs use (``model.kind``).
      init: ``(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype) -> params``,
        the config's view of the initialiser; ``weight_scale=None`` takes the model's
        default, ``bias=False`` leaves out a separate bias where the data has the bias trick.
      scores: ``(params, x [N, D]) -> scores [N, C]``, built from gates or written in plain
        JAX (the tracer runs it through the gates either way).
      reference: the same scores in plain jnp (``jaxprop.reference``); None: ``scores``
        itself, for a model written in plain JAX.
      activations: ``(hidden_dim, num_classes) -> floats per example`` that one step holds
        (for the memory estimate made before compiling).
      summary: one line for listings.
      config_keys: further ``model.*`` config keys that ``init`` takes as keywords (the
        convnet's ``num_filters``, ``filter_size``, ``batchnorm``).
      dropout: ``scores`` and ``reference`` take ``key=`` and ``dropout_keep=``: given a
        ``jax.random`` key (a training step's), they draw their dropout masks from it, so
        the two agree mask for mask; without one (test time) nothing is dropped.

    A user's own model is a ``Model`` in their own module, named in a config as
    ``model.kind = "module:attr"``.
    """

    name: str
    init: Callable
    scores: Callable
    reference: Callable | None = None
    activations: Callable[[int, int], int] = lambda h, c: 4 * h + 3 * c
    summary: str = ""
    config_keys: tuple[str, ...] = ()
    dropout: bool = False

    def __post_init__(self):
        if self.reference is None:
            object.__setattr__(self, "reference", self.scores)


def _linear(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype):
    scale = 1e-3 if weight_scale is None else weight_scale
    return linear_init(key, in_dim, num_classes, weight_scale=scale, dtype=dtype, bias=bias)


def _two_layer(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype):
    return two_layer_init(key, in_dim, hidden_dim, num_classes, weight_scale=weight_scale,
                          dtype=dtype)


def _convnet(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype, num_filters,
             filter_size, batchnorm):
    if not bias:
        raise ValueError("model.kind='convnet' has its own biases: set data.bias_trick = false")
    return convnet_init(key, image_shape("convnet", in_dim), num_classes,
                        num_filters=num_filters, filter_size=filter_size, hidden_dim=hidden_dim,
                        weight_scale=1e-3 if weight_scale is None else weight_scale,
                        batchnorm=batchnorm, dtype=dtype)


def _recurrent(cell):
    def init(key, in_dim, num_classes, *, hidden_dim, weight_scale, bias, dtype):
        if not bias:
            raise ValueError(f"model.kind={cell!r} has its own biases: set data.bias_trick = "
                             "false")
        side = math.isqrt(in_dim)
        if side * side != in_dim:
            raise ValueError(f"model.kind={cell!r} reads square images row by row; a row of "
                             f"{in_dim} pixels is not H*H")
        return recurrent_init(key, side, hidden_dim, num_classes, cell=cell,
                              weight_scale=weight_scale, dtype=dtype)
    return init


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("linear", _linear, linear_scores, reference.linear_scores,
          lambda h, c: 3 * c,  # scores, their gradient, the loss's local gradient
          "linear classifier s = x W + b (W only with the bias trick)"),
    Model("two_layer", _two_layer, two_layer_scores, reference.two_layer_scores,
          lambda h, c: 4 * h + 3 * c,
          "two-layer ReLU net s = relu(x W1 + b1) W2 + b2"),
    Model("convnet", _convnet, convnet_scores, reference.convnet_scores,
          # per example, for 8x8 images of 32 filters: conv, norm, ReLU, pool and their
          # gradients (a lower estimate for larger images), then the hidden and score layers
          lambda h, c: 6 * 32 * 8 * 8 + 6 * h + 3 * c,
          "CS231n's three-layer ConvNet: conv - ReLU - 2x2 max pool - affine - ReLU - affine "
          "(optional batch norm and dropout)",
          config_keys=("num_filters", "filter_size", "batchnorm"), dropout=True),
    Model("rnn", _recurrent("rnn"), rnn_scores, reference.rnn_scores,
          lambda h, c: 8 * 4 * h + 3 * c,  # per step: the state, its pre-activation, grads
          "vanilla RNN over the image's rows (lax.scan), scores from the last state"),
    Model("lstm", _recurrent("lstm"), lstm_scores, reference.lstm_scores,
          lambda h, c: 8 * 12 * h + 3 * c,  # per step: four gates, c, h and their gradients
          "LSTM over the image's rows (lax.scan), scores from the last state"),
)}
"""The classifiers by the name configs use (``model.kind``)."""


def resolve(kind: str) -> Model:
    """The model a config names: a registered name, or ``"module:attr"`` of a user's Model."""
    from jaxprop._lazy import resolve

    return resolve(MODELS, kind, Model, "model.kind", "model")
