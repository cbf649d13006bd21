"""The package version, importable from every room without loading the public API."""

__version__ = "0.1.0"
