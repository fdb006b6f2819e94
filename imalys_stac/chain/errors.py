"""The one error type of the chain language: it always knows where the problem is."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ImalysError
from ..text import shown_bytes


class ChainError(ImalysError, ValueError):
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
        rows: str | Path | None = None,
        row_line: int | None = None,
    ) -> None:
        self.message = message
        self.file = Path(file) if file is not None else None
        self.line = line
        self.command = command
        self.parameter = parameter
        self.hint = hint
        #: repeat mode: the variable list and the line of the row the chain was read with
        self.rows = Path(rows) if rows is not None else None
        self.row_line = row_line
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
        if self.rows is not None:
            text += f" [variables line {self.row_line} of {self.rows}]" if self.row_line else f" [variables {self.rows}]"
        return printable(text)

    def __reduce__(self):  # keep the fields when the error crosses a process boundary (Dask)
        return (_rebuild, (self.message, self.file, self.line, self.command, self.parameter, self.hint,
                           self.rows, self.row_line))

    def located(
        self,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        command: str | None = None,
        parameter: str | None = None,
    ) -> ChainError:
        """A copy with missing location fields filled in (fields already set win)."""
        return ChainError(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            command=self.command or command,
            parameter=self.parameter or parameter,
            hint=self.hint,
            rows=self.rows,
            row_line=self.row_line,
        )

    def in_row(self, rows: str | Path, row_line: int) -> ChainError:
        """A copy that also names the repeat-list row the chain was read with."""
        return ChainError(self.message, file=self.file, line=self.line, command=self.command,
                          parameter=self.parameter, hint=self.hint, rows=rows, row_line=row_line)


#: characters a terminal does not show as one: C0/C1 controls and the Unicode line/paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` as one line that is safe to print on any terminal: control characters (a NUL, a
    line break inside a value) are shown as ``\\x00``, and bytes of a file name that are not
    UTF-8 (kept by Python as lone surrogates, e.g. a Latin-1 ``é``) as ``\\xe9`` instead of
    making ``print`` raise ``UnicodeEncodeError``."""
    return shown_bytes(_CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text))


def _rebuild(message, file, line, command, parameter, hint, rows=None, row_line=None) -> ChainError:
    return ChainError(message, file=file, line=line, command=command, parameter=parameter, hint=hint,
                      rows=rows, row_line=row_line)
