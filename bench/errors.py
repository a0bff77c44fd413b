class UserError(Exception):
    """An error the user caused; the CLI prints it as one line and exits 2."""
