"""The one error base class: a problem the user can fix, told in one line that names it and the
fix, with the exit code the command line ends with (2: usage or data; 1: the submission failed).
Every stage raises its own subclass; the CLI's one handler prints it and exits."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A usage or data error: ``str(exc)`` is one line naming the problem and the fix."""

    #: what the command line exits with
    exit_code: int = 2
