"""The version of interp (read by the build from here, without importing interp)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
