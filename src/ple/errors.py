"""The one exception type for mistakes in what a user gave us.

The CLI turns it into a single line on stderr and exit code 2; everything else is a bug and
keeps its traceback. It is a ValueError, so library users may catch it as one.
"""


class UserError(ValueError):
    """Bad input from the user: a config value, a data file, a path, a reward."""
