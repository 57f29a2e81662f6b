"""The one error type the command line turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad input or output path: reported as one line, nothing is written."""
