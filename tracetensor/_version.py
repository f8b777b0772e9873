"""The package version, read by pyproject.toml and `tracetensor --version`."""

__version__ = "0.1.0"
