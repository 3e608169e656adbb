"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class DifusiError(Exception):
    """A user-facing problem: the message names what is wrong and how to fix it."""
