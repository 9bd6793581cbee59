"""The ``l2t-gs`` command line: thin wrappers over the Python API.

Each sub-module exposes ``register(subparsers)`` that adds its sub-command(s) and sets
``func`` on the parser to a callable ``(args) -> int``.
"""
