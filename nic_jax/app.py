"""The one start-up wrapper of every command line: absl app + clean user errors.

A user mistake (`InputError`: a bad file, field or flag) ends the program with its
message and exit status 2, never with a traceback from deep inside JAX.
"""

import logging as py_logging
import sys

from absl import app, logging

from nic_jax.errors import InputError

__all__ = ["InputError", "run"]


class _QuietLibraries(py_logging.Filter):
    """Drops INFO records of orbax (a dozen lines per checkpoint save)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno > py_logging.INFO or "/orbax/" not in record.pathname


def run(main_fn) -> None:
    """`absl.app.run(main_fn)` with `InputError` turned into a one-line error."""

    def guarded(argv):
        logging.get_absl_handler().addFilter(_QuietLibraries())
        try:
            return main_fn(argv)
        except InputError as error:
            logging.error("%s", error)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
