"""The package version, in a leaf any module can import without loading the package."""

__version__ = "0.1.0"
