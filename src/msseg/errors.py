"""The one exception type msseg raises for bad input: the CLI turns it into a one-line error."""


class MssegError(Exception):
    """Bad input or an impossible request; the message names the file and the problem."""
