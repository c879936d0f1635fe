"""The one exception type users see: a message that says what to do."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits 2."""
