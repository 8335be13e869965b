"""The package's version, read from its installed metadata (`version` in pyproject.toml): a leaf module, so that any
stage can record it without importing the package root."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmm-concepts")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
