"""The one error type of the chain language: it always knows where the problem is."""
from __future__ import annotations

from pathlib import Path


class ChainError(ValueError):
    """A problem in a chain file (or a repeat list), located as precisely as known.

    ``str(e)`` is one readable line, e.g.
    ``chain2a.txt:14: import: parameter 'qualty' is not known — did you mean 'quality'?``.
    Every location field is optional so the same type serves file-level errors
    (no line) and value errors raised before the location is known (no file).

    It subclasses ``ValueError`` because every chain problem is a bad input value; this lets
    value parsers raise it and callers re-locate it (see :meth:`located`).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        command: str | None = None,
        parameter: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = Path(file) if file is not None else None
        self.line = line
        self.command = command
        self.parameter = parameter
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = ""
        if self.file is not None:
            prefix = self.file.name
            if self.line is not None:
                prefix += f":{self.line}"
            prefix += ": "
        elif self.line is not None:
            prefix = f"line {self.line}: "
        if self.command:
            prefix += f"{self.command}: "
        text = prefix + self.message
        if self.hint:
            text += f" — {self.hint}"
        return text

    def __reduce__(self):  # keep the fields when the error crosses a process boundary (Dask)
        return (_rebuild, (self.message, self.file, self.line, self.command, self.parameter, self.hint))

    def located(
        self,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        command: str | None = None,
        parameter: str | None = None,
    ) -> "ChainError":
        """A copy with missing location fields filled in (fields already set win)."""
        return ChainError(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            command=self.command or command,
            parameter=self.parameter or parameter,
            hint=self.hint,
        )


def _rebuild(message, file, line, command, parameter, hint) -> ChainError:
    return ChainError(message, file=file, line=line, command=command, parameter=parameter, hint=hint)
