"""jaxprop's version, read by pyproject.toml and ``jaxprop --version``."""

__version__ = "0.2.0"
