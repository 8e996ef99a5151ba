"""User-facing errors.

Every error a user can cause (a bad config key, an unknown task, a corrupt
checkpoint, a malformed data file) is raised as an :class:`MBDPOError`. The
command line prints its message on one line and exits with status 2, without a
traceback; the Python API lets it propagate like any other exception.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable


class MBDPOError(Exception):
    """An error caused by the user's input; its message is one line."""


class ConfigError(MBDPOError):
    """An unknown configuration key or a value of the wrong type or range."""


class UnknownTaskError(MBDPOError):
    """A task name that no environment suite registers."""


class MissingSuiteError(MBDPOError):
    """A task whose simulator suite is not installed, or cannot run on this machine."""


class CheckpointError(MBDPOError):
    """A missing, truncated, corrupt or foreign checkpoint file."""


class DatasetError(MBDPOError):
    """A data-set file or folder that is missing, unreadable or not in the public format."""


def exit_on_user_error(main: Callable[[], object], program: str) -> None:
    """Run a script's ``main``; an :class:`MBDPOError` ends it as on the command line: its message on one
    line (``program: error: ...``) and exit status 2, without a traceback."""
    try:
        main()
    except MBDPOError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(2)


def closest(name: str, valid: Iterable[str], n: int = 3, otherwise: str = "") -> str:
    """Format the closest valid names to ``name`` for an error message; with no close one, ``otherwise``
    (a summary, for long lists) or the whole list."""
    valid = sorted(valid)
    matches = difflib.get_close_matches(name, valid, n=n, cutoff=0.5)
    if matches:
        return "did you mean " + ", ".join(repr(m) for m in matches) + "?"
    return "valid: " + (otherwise or ", ".join(valid))


def require_installed(package: str, needed_by: str, install: str) -> None:
    """Raise a one-line :class:`MissingSuiteError` naming ``install`` unless ``package`` is importable."""
    if importlib.util.find_spec(package) is None:
        raise MissingSuiteError(f"{needed_by} needs {package}, which is not installed: {install}")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0][:120] if text else type(error).__name__


def refused_global(error: BaseException) -> str | None:
    """The global that ``torch.load(weights_only=True)`` refused to load, if that is why it failed
    (a pickle naming a class or function outside the allow-list), else ``None``."""
    match = re.search(r"GLOBAL (\S+)", str(error))
    return match.group(1) if match else None
