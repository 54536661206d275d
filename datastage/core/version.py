"""The version of datastage, at the bottom of the layer order: the CLI's ``--version``, the HTTP
User-Agent and the staging marker read it here without importing the package's public API
(``datastage/__init__.py`` imports api.py, which imports staging: a cycle)."""

__version__ = "0.1.0"
