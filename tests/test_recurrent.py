"""The course's recurrent layers (jaxprop.models, CS231n assignment 3) written with lax.scan:
each checked in float64 against jax.grad of the same code, in both modes and under
jax.grad(jaxprop.gated(f)), with only our rules observed; and against the CS231n NumPy loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ATOL, RTOL

import jaxprop
from jaxprop import Gate, models

pytestmark = pytest.mark.slow  # the recurrent layers' tests run in the slow job (.ci/run)

N, T, D, H, V = 3, 5, 4, 6, 7


def _normal(seed, *shape, scale=0.5):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)


X = _normal(0, N, T, D)
H0 = _normal(1, N, H)
RNN_W = (_normal(2, D, H), _normal(3, H, H), _normal(4, H))
LSTM_W = (_normal(5, D, 4 * H), _normal(6, H, 4 * H), _normal(7, 4 * H))
WORDS = jax.random.randint(jax.random.PRNGKey(8), (N, T), 0, V)
EMBED = _normal(9, V, D)
MASK = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)
W_VOCAB, B_VOCAB = _normal(10, H, V), _normal(11, V)
UP = _normal(12, N, T, H)  # weights that make each hidden state matter to the loss


def rnn_loss(params, x, h0):
    return jnp.sum(models.rnn_forward(x, h0, *params) * UP)


def lstm_loss(params, x, h0):
    return jnp.sum(models.lstm_forward(x, h0, *params) * UP)


def rnn_step_loss(params, x, h0):
    return jnp.sum(models.rnn_step_forward(x[:, 0], h0, *params) * UP[:, 0])


def lstm_step_loss(params, x, h0):
    h, c = models.lstm_step_forward(x[:, 0], h0, 0.3 * h0, *params)
    return jnp.sum(h * UP[:, 0]) + jnp.sum(c ** 2)


def captioning_loss(params, words):
    """CS231n's captioning pipeline: embed, LSTM, temporal affine, masked temporal softmax."""
    embed, wx, wh, b, w_vocab, b_vocab = params
    x = models.word_embedding_forward(words, embed)
    h = models.lstm_forward(x, H0, wx, wh, b)
    scores = models.temporal_affine_forward(h, w_vocab, b_vocab)
    return models.temporal_softmax_loss(scores, (words + 1) % V, MASK)


FUNCTIONS = {
    "rnn_step": (rnn_step_loss, (RNN_W, X, H0)),
    "rnn": (rnn_loss, (RNN_W, X, H0)),
    "lstm_step": (lstm_step_loss, (LSTM_W, X, H0)),
    "lstm": (lstm_loss, (LSTM_W, X, H0)),
    "captioning": (captioning_loss, ((EMBED, *LSTM_W, W_VOCAB, B_VOCAB), WORDS)),
}
DRIVERS = {
    "reverse": (lambda f: jaxprop.reverse.grad(f, argnums=0), "vjp"),
    "forward": (lambda f: jaxprop.forward.grad(f, argnums=0), "jvp"),
    "jax.grad(gated)": (lambda f: jax.grad(jaxprop.gated(f), argnums=0), "jvp"),
}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_recurrent_layers_give_jax_derivatives_through_our_rules(name, driver):
    f, args = FUNCTIONS[name]
    grad, kind = DRIVERS[driver]
    events = []
    with jaxprop.observe(events.append):
        got = grad(f)(*args)
    chex.assert_trees_all_close(got, jax.grad(f)(*args), rtol=RTOL, atol=ATOL)
    assert events and all(isinstance(e.gate, Gate) for e in events), \
        {type(e.gate).__name__ for e in events}
    ran = {e.gate.name for e in events if e.kind == kind}
    assert {"tanh", "matmul"} <= ran, ran


def test_the_scan_is_not_unrolled():
    """The reverse-mode program of a 40-step LSTM is as long as that of a 4-step one."""
    def f(params, x):
        return jnp.sum(models.lstm_forward(x, H0, *params) ** 2)

    sizes = [len(str(jax.make_jaxpr(jaxprop.reverse.grad(f))(LSTM_W, _normal(0, N, t, D))))
             for t in (4, 40)]
    assert sizes[1] <= sizes[0] + 40, sizes


# CS231n's NumPy loops (rnn_layers.py), as the assignment writes them.
def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def numpy_rnn_forward(x, h0, Wx, Wh, b):
    h, prev = np.zeros((x.shape[0], x.shape[1], h0.shape[1])), h0
    for t in range(x.shape[1]):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h[:, t] = prev
    return h


def numpy_rnn_backward(dh, x, h0, Wx, Wh, b, h):
    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dprev = np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        prev = h[:, t - 1] if t > 0 else h0
        da = (dh[:, t] + dprev) * (1 - h[:, t] ** 2)
        dx[:, t], dWx, dWh, db = da @ Wx.T, dWx + x[:, t].T @ da, dWh + prev.T @ da, db + da.sum(0)
        dprev = da @ Wh.T
    return dx, dprev, dWx, dWh, db


def numpy_lstm_forward(x, h0, Wx, Wh, b):
    H = h0.shape[1]
    h, prev_h, prev_c = np.zeros((x.shape[0], x.shape[1], H)), h0, np.zeros_like(h0)
    for t in range(x.shape[1]):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        i, f, o, g = (_sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), _sigmoid(a[:, 2 * H:3 * H]),
                      np.tanh(a[:, 3 * H:]))
        prev_c = f * prev_c + i * g
        prev_h = o * np.tanh(prev_c)
        h[:, t] = prev_h
    return h


def numpy_temporal_softmax_loss(x, y, mask):
    n, t, v = x.shape
    flat, yf, mf = x.reshape(n * t, v), y.reshape(n * t), mask.reshape(n * t)
    probs = np.exp(flat - flat.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return -np.sum(mf * np.log(probs[np.arange(n * t), yf])) / n


def test_forwards_match_the_course_numpy_loops():
    args = [np.asarray(a) for a in (X, H0)]
    np.testing.assert_allclose(models.rnn_forward(X, H0, *RNN_W),
                               numpy_rnn_forward(*args, *map(np.asarray, RNN_W)), rtol=RTOL)
    np.testing.assert_allclose(models.lstm_forward(X, H0, *LSTM_W),
                               numpy_lstm_forward(*args, *map(np.asarray, LSTM_W)), rtol=RTOL)
    scores = _normal(13, N, T, V)
    y = (WORDS + 2) % V
    np.testing.assert_allclose(models.temporal_softmax_loss(scores, y, MASK),
                               numpy_temporal_softmax_loss(*map(np.asarray, (scores, y, MASK))),
                               rtol=RTOL)
    np.testing.assert_array_equal(models.word_embedding_forward(WORDS, EMBED),
                                  np.asarray(EMBED)[np.asarray(WORDS)])


def test_rnn_backprop_through_time_matches_the_course_loop():
    """Our VJP rules, step by step in a reverse scan, against rnn_backward's NumPy loop."""
    def f(x, h0, Wx, Wh, b):
        return jnp.sum(models.rnn_forward(x, h0, Wx, Wh, b) * UP)

    got = jaxprop.reverse.grad(f, argnums=(0, 1, 2, 3, 4))(X, H0, *RNN_W)
    arrays = [np.asarray(a) for a in (X, H0, *RNN_W)]
    want = numpy_rnn_backward(np.asarray(UP), *arrays, numpy_rnn_forward(*arrays))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_masked_steps_get_no_gradient():
    scores = _normal(14, N, T, V)
    g = jaxprop.reverse.grad(models.temporal_softmax_loss)(scores, WORDS, MASK)
    assert np.all(np.asarray(g)[~np.asarray(MASK)] == 0)
    assert np.all(np.abs(np.asarray(g)[np.asarray(MASK)]).sum(-1) > 0)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_sequence_classifier_reads_rows(kind):
    model = models.MODELS[kind]
    params = model.init(jax.random.PRNGKey(0), 64, 10, hidden_dim=H, weight_scale=None,
                        bias=True, dtype=jnp.float64)
    x = _normal(15, N, 64)
    scores = model.scores(params, x)
    assert scores.shape == (N, 10)
    np.testing.assert_allclose(scores, model.scores(params, x.reshape(N, 8, 8)), rtol=RTOL)
    f = lambda p: jnp.sum(model.scores(p, x) ** 2)  # noqa: E731
    chex.assert_trees_all_close(jaxprop.reverse.grad(f)(params), jax.grad(f)(params),
                                rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=f"{kind}_scores: x must be"):
        model.scores(params, _normal(16, N, 60))
