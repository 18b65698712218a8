"""The one exception type that means "the user's input is wrong"."""


class NerfpipeError(Exception):
    """A problem with the user's data, config or arguments.

    The message must name the file or config key and say what is wrong; the CLI prints
    it without a traceback and exits with status 2.
    """
