"""User-facing errors: the CLI prints them as one line on stderr and exits non-zero."""


class L2TError(Exception):
    """An error caused by user input (a bad file, a wrong option): reported without a traceback."""
