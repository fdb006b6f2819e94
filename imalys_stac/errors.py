"""The error family: every problem a user can fix is an `ImalysError`.

Only these (and operating-system errors about files, which are the user's environment) are
reported as one located line (`chain.txt:14: import: …`). Anything else is a bug: the CLI says
"internal error", points at the run log, and `--debug` shows the traceback.
"""
from __future__ import annotations


class ImalysError(Exception):
    """Base of the errors a user can resolve (bad input, data, folders, resources)."""

    hint: str | None = None


class InputError(ImalysError, ValueError):
    """A value, file or dataset that cannot be used as given."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ResourceError(ImalysError):
    """Work that cannot fit the machine or cluster (grid too large, memory too small, no workers)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM); cleans up like Ctrl-C."""

    def __init__(self, signame: str = "SIGINT"):
        super().__init__(signame)
        self.signame = signame
