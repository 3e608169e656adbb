"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class DifusiError(Exception):
    """A user-facing problem: the message names what is wrong and how to fix it."""


def first_line(error: BaseException) -> str:
    """An exception's first message line, or its class name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
