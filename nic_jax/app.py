"""The one start-up wrapper of every command line: absl app + clean user errors.

A user mistake (`InputError`: a bad file, field or flag) ends the program with its
message and exit status 2, never with a traceback from deep inside JAX.
"""

import sys

from absl import app, logging

from nic_jax.errors import InputError

__all__ = ["InputError", "run"]


def run(main_fn) -> None:
    """`absl.app.run(main_fn)` with `InputError` turned into a one-line error."""

    def guarded(argv):
        try:
            return main_fn(argv)
        except InputError as error:
            logging.error("%s", error)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
