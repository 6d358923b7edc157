"""adgen's version (``adgen.__version__``), here so that modules below the public API can name
it without importing the package's ``__init__``."""

__version__ = "0.1.0"
