"""The ``datastage`` command: parse, call the API, print.

main (the group, ``main()`` and the core commands), machine (env, config, stage, pack, push,
cache), options (options shared by both).
"""

from .main import cli, main

__all__ = ["cli", "main"]
