"""Strict settings for every test: float64 and no silent rank promotion; compiled programs
cached in a folder of the test session, never in the user's ~/.cache."""

import os
import signal
import tempfile

import jax

os.environ.setdefault("JAXPROP_CACHE_DIR", tempfile.mkdtemp(prefix="jaxprop-test-xla-"))

# A shell starts a background job with SIGINT ignored, and jaxprop (rightly) leaves an ignored
# signal ignored; the tests of its Ctrl-C handling need SIGINT as a terminal delivers it, as
# the subprocess tests arrange with test_faults.AS_A_TERMINAL.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
