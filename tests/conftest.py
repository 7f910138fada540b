"""Strict settings for every test: float64 and no silent rank promotion; compiled programs
cached in a folder of the test session, never in the user's ~/.cache."""

import os
import tempfile

import jax

os.environ.setdefault("JAXPROP_CACHE_DIR", tempfile.mkdtemp(prefix="jaxprop-test-xla-"))

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
