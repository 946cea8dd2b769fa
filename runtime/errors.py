"""Errors a user can act on: the CLI prints their message as one line and exits non-zero."""


class StylecastError(Exception):
    """A problem with the user's input, files or environment; the message names the fix."""

    exit_code = 2


class Interrupted(StylecastError):
    """The user pressed Ctrl-C; whatever was safe to keep has been kept."""

    exit_code = 130
