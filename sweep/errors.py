"""The one exception type a user can cause; the CLI turns it into a one-line message."""


class SweepError(Exception):
    """Bad input or an unusable environment: reported as one line, exit code 2."""
