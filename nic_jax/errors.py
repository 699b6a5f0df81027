"""The one exception type for user mistakes: bad files, fields, flags and configs.

Entry points catch `InputError` and print its message without a traceback, so the
message must name the file or field, what was found and what was expected.
"""


class InputError(ValueError):
    """A user-supplied file, field or setting is wrong; the message says how."""


class WriteError(InputError):
    """A file or checkpoint could not be written (disk full, quota, I/O error);
    the message names it and the last complete checkpoint."""


def expect(condition: bool, message: str) -> None:
    """Raises `InputError(message)` unless `condition` holds."""
    if not condition:
        raise InputError(message)
