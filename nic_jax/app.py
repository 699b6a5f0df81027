"""The one start-up wrapper of every command line: absl app + clean user errors.

A user mistake (`InputError`: a bad file, field, flag or config override), a
file or checkpoint that cannot be written (disk full, quota) and a run stopped by
a non-finite loss, reward, fitness or parameter (`FloatingPointError`) all end
the program with one `error: ...` line on stderr and exit status 2, never with a
traceback from deep inside JAX, orbax or ml_collections.
"""

import errno
import logging as py_logging
import os
import re
import sys
import traceback

from absl import app, flags, logging

from nic_jax.errors import InputError, WriteError

__all__ = ["InputError", "run"]

_CLEAN_STOPS = (InputError, FloatingPointError)
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
# ml_collections re-raises errors of get_config() with the traceback as text
_INPUT_ERROR_LINE = re.compile(r"nic_jax\.errors\.InputError: (.*)")
_WRONG_TYPE = (
    (re.compile(r"invalid literal for int\(\) with base 10: (.*)"), "an integer"),
    (re.compile(r"could not convert string to float: (.*)"), "a number"),
)


class _QuietLibraries(py_logging.Filter):
    """Drops INFO records of orbax (a dozen lines per checkpoint save) and the
    tracebacks of orbax's and asyncio's ERROR records (the writes of a failed
    save, as asyncio reports them at exit: the run's own error names it)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        if "/orbax/" not in record.pathname and "/asyncio/" not in record.pathname:
            return True
        record.exc_info, record.exc_text = None, None
        return record.levelno > py_logging.INFO


def _exit_with(message: str, hard: bool = False) -> None:
    """Prints the error and exits with status 2. `hard`: without Python's shutdown,
    after a failed write: orbax's writers of the failed save are still at work
    on the full disk and would report into closed event loops at exit (the last
    complete checkpoint is on disk; the failed one is a temporary directory)."""
    print(f"error: {message}", file=sys.stderr)
    if not hard:
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


def _in_asyncio_only(kind, value, tb) -> bool:
    frames = traceback.extract_tb(tb)
    return (
        kind is RuntimeError
        and str(value) == "Event loop is closed"
        and all("/asyncio/" in frame.filename for frame in frames)
    )


def _quiet_closed_event_loops() -> None:
    """Drops 'RuntimeError: Event loop is closed' raised inside asyncio alone: once
    one item of a checkpoint fails to write (disk full), tensorstore completes
    the other writes into the event loops orbax has closed, and Python prints
    each such error; the run's own error says what failed."""
    except_hook, unraisable_hook = sys.excepthook, sys.unraisablehook

    def on_exception(kind, value, tb):
        if not _in_asyncio_only(kind, value, tb):
            except_hook(kind, value, tb)

    def on_unraisable(unraisable):
        exc = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
        if not _in_asyncio_only(*exc):
            unraisable_hook(unraisable)

    sys.excepthook, sys.unraisablehook = on_exception, on_unraisable


def _flag_message(error: flags.Error) -> str:
    """One line from absl's flag error: the flag, what was found and expected."""
    text = str(error).strip()
    head = text.splitlines()[0].removeprefix("flag ")
    found = _INPUT_ERROR_LINE.search(text)
    if found:  # get_config(arg) refused its `:arg`
        return f"{head.split(': Error whilst')[0]}: {found.group(1)}"
    for pattern, expected in _WRONG_TYPE:
        head = pattern.sub(rf"found \1, expected {expected}", head)
    if "Traceback" in text:  # another error inside a config file: its last line
        head = f"{head.split(': Error whilst')[0]}: {text.splitlines()[-1].strip()}"
    return head


def _unknown_override(error: Exception, argv: list) -> str | None:
    """The message for `--config.a.b=v` naming a field the config lacks, or None."""
    text = str(error.args[0] if error.args else error)
    key = re.search(r"'([^'\\]+)", text)
    if key is None:
        return None
    name = key.group(1)
    flag = next(
        (a for a in argv if a.startswith("--config.") and f".{name}" in a), None
    )
    if flag is None:
        return None
    hint = re.search(r'Did you mean "([^"]+)"', text)
    return (
        f"{flag}: the config has no field {name!r}"
        + (f"; did you mean {hint.group(1)!r}?" if hint else "")
        + " (a locked config accepts only its own fields)"
    )


def _unloadable_configs() -> str | None:
    """ml_collections defers a missing config file's error to first use."""
    for name, value in flags.FLAGS.flag_values_dict().items():
        if type(value).__name__ == "_ErrorConfig":
            cause = str(object.__getattribute__(value, "_error")).strip()
            return f"--{name}: {cause.splitlines()[-1].strip()}"
    return None


def parse_flags(argv: list) -> list:
    """absl's flag parsing with every config mistake as one `error: ...` line."""
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        _exit_with(_flag_message(error))
    except (KeyError, AttributeError) as error:  # an unknown --config.a.b=v
        message = _unknown_override(error, argv)
        if message is None:
            raise
        _exit_with(message)
    message = _unloadable_configs()
    if message is not None:
        _exit_with(message)
    return rest


def run(main_fn) -> None:
    """`absl.app.run(main_fn)` with user errors and clean stops as one line."""

    def guarded(argv):
        logging.get_absl_handler().addFilter(_QuietLibraries())
        _quiet_closed_event_loops()
        try:
            return main_fn(argv)
        except _CLEAN_STOPS as error:
            logging.error("%s", error)
            _exit_with(str(error), hard=isinstance(error, WriteError))
        except OSError as error:  # a full disk or quota while writing logs, ...
            if error.errno not in _STORAGE_ERRNOS:
                raise
            logging.error("%s", error)
            message = f"{error}; free space (or fix the disk) and rerun to resume"
            _exit_with(message, hard=True)

    app.run(guarded, flags_parser=parse_flags)
