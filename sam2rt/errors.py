"""The one exception type users see."""


class Sam2rtError(Exception):
    """A user error: bad input, missing file, unavailable dependency.

    The message says what to do. The CLI prints it and exits with code 2, without a traceback.
    """
