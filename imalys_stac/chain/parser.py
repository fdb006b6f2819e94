"""Chain files → typed commands.

Three passes, so each error can point at its line:
1. tokenise: lines → commands with their ``key = value`` entries (comments, blanks dropped);
2. variables: ``replace`` values, overridden by the repeat-list row;
3. per command: keys → fields, ``$N`` substitution, value parsing, cross-parameter rules.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..registry import FORMATS, companion_paths
from . import values as v
from .errors import ChainError
from .models import COMMANDS, Catalog, Export, Home, Model, Replace
from .paths import catalog_outputs, kind_of, path_key

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\$[0-9]+")
_VARIABLE = re.compile(r"\$([1-9])")
#: line ends: only these (str.splitlines also splits at form feeds, U+2028 … and would make line
#: numbers differ from what an editor shows)
_LINE_END = re.compile(r"\r\n|\r|\n")
#: a comment: ``#`` at the start of a line or after whitespace, to the end of the line. A ``#``
#: inside a word is text (``target = ~/results/run#2.tif`` names that file; cutting it there
#: would silently write ``run`` in another format)
_COMMENT = re.compile(r"(?:^|(?<=\s))#")


def split_lines(text: str) -> list[str]:
    """``text`` cut at LF, CRLF and CR only (an editor's lines); no empty last line."""
    lines = _LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def strip_comment(line: str) -> str:
    """``line`` without its comment (see :data:`_COMMENT`)."""
    match = _COMMENT.search(line)
    return line[:match.start()] if match else line


#: added to the reason when a value that holds a ``#`` is refused (the user may have meant a comment)
COMMENT_HINT = "a '#' starts a comment only at the start of a line or after a space"


@dataclass
class Command:
    """One command of a chain, with its typed parameters and where each came from."""

    name: str
    line: int
    params: Model
    param_lines: dict[str, int] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)
    file: Path | None = None

    def error(self, msg: str, parameter: str | None = None, hint: str | None = None) -> ChainError:
        """A ChainError located at ``parameter``'s line (else this command's line), for runtime problems."""
        line = self.param_lines.get(parameter, self.line) if parameter else self.line
        return ChainError(msg, file=self.file, line=line, command=self.name, parameter=parameter, hint=hint)

    def written(self, parameter: str) -> str | None:
        """``parameter``'s value exactly as the chain gives it (variables substituted), for messages:
        ``quality = 0.999`` → ``"0.999"``. Several values (a repeated key) are joined by ``", "``;
        ``None`` when the chain does not give it. Aliases are found under either name.
        (Numeric values also print as written: see :class:`values.Number`.)"""
        texts = self.raw.get(parameter)
        if texts is None:
            model_fields = {f.name: f for f in dataclasses.fields(self.params) if "parser" in f.metadata}
            name = parameter if parameter in model_fields else next(
                (n for n, f in model_fields.items() if parameter in f.metadata["aliases"]), None)
            if name is None:
                return None
            keys = (name, *model_fields[name].metadata["aliases"])
            texts = [t for k in keys for t in self.raw.get(k, [])]
        return ", ".join(texts) if texts else None


_M = TypeVar("_M", bound=Model)


def params_as(cmd: Command, model: type[_M]) -> _M:
    """``cmd``'s parameters as ``model``, the model its name stands for (see :data:`models.COMMANDS`)."""
    if not isinstance(cmd.params, model):
        raise TypeError(f"{cmd.name} at line {cmd.line} has {type(cmd.params).__name__} parameters, not {model.__name__}")
    return cmd.params


@dataclass
class Chain:
    """A parsed chain: its commands in order and the variables in effect."""

    path: Path
    commands: list[Command]
    variables: dict[int, str] = field(default_factory=dict)

    @property
    def home(self) -> Home:
        """The ``home`` parameters (every valid chain has exactly one)."""
        return next(c.params for c in self.commands if isinstance(c.params, Home))

    def find(self, name: str) -> list[Command]:
        """All commands called ``name``, in order."""
        return [c for c in self.commands if c.name == name]

    def __iter__(self):
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)


@dataclass
class _Entry:
    key: str
    value: str
    line: int


@dataclass
class _Block:
    name: str
    line: int
    entries: list[_Entry] = field(default_factory=list)


def _shown(value: str, limit: int = 120) -> str:
    """A value as written, cut in the middle when it is too long to read in a one-line message."""
    return value if len(value) <= limit else f"{value[:limit // 2]}…({len(value)} characters)…{value[-20:]}"


def _close(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if match:
        return f"did you mean '{match[0]}'?"
    return f"accepted: {', '.join(choices)}"


def _tokenise(text: str, file: Path) -> list[_Block]:
    lines = split_lines(text)
    first = lines[0].split() if lines else []
    if not first or first[0] != "IMALYS":
        raise ChainError(
            "is not an Imalys chain: line 1 must start with the word IMALYS",
            file=file, line=1 if lines else None, hint="e.g. 'IMALYS [process chain 2a]'",
        )
    blocks: list[_Block] = []
    for number, line in enumerate(lines[1:], start=2):
        content = strip_comment(line).strip()
        if not content:
            continue
        if "=" in content:
            key, _, value = content.partition("=")
            key, value = key.strip(), value.strip()
            if not _KEY.fullmatch(key):
                raise ChainError(f"'{key}' is not a parameter name", file=file, line=number,
                                 command=blocks[-1].name if blocks else None,
                                 hint="a parameter line is 'name = value' with a one-word name")
            if not blocks:
                raise ChainError(f"parameter '{key}' comes before any command", file=file, line=number,
                                 parameter=key.lower(), hint="parameters belong to the command line above them (e.g. home)")
            if not value:
                raise ChainError(f"parameter '{key}' has no value", file=file, line=number,
                                 command=blocks[-1].name, parameter=key.lower(),
                                 hint=f"write '{key} = value' or drop the line to use the default")
            blocks[-1].entries.append(_Entry(key.lower(), value, number))
        elif len(content.split()) == 1:
            blocks.append(_Block(content.lower(), number))
        else:
            words = content.split()
            hint = f"did you mean '{words[0]} = {' '.join(words[1:])}'?" if blocks else (
                "a command is one word on its own line")
            raise ChainError(f"'{content}' is neither a command (one word) nor a parameter (name = value)",
                             file=file, line=number, command=blocks[-1].name if blocks else None, hint=hint)
    return blocks


def _read_replace(block: _Block, file: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    lines: dict[int, int] = {}
    for entry in block.entries:
        match = re.fullmatch(r"\$([1-9])", entry.key)
        if not match:
            raise ChainError(f"'{entry.key}' is not a variable", file=file, line=entry.line, command="replace",
                             parameter=entry.key, hint="replace defines $1 … $9, e.g. $1 = c7934")
        number = int(match.group(1))
        if number in found:
            raise ChainError(f"${number} is given twice (lines {lines[number]} and {entry.line})", file=file,
                             line=entry.line, command="replace", parameter=entry.key, hint="give it once")
        found[number], lines[number] = entry.value, entry.line
    return found


def _substitute(entry: _Entry, variables: dict[int, str], file: Path, command: str) -> str:
    def swap(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number not in variables:
            raise ChainError(
                f"{entry.key} = {entry.value}: variable ${number} is not defined", file=file, line=entry.line,
                command=command, parameter=entry.key,
                hint=f"define it under replace (${number} = value) or give it in the repeat list (column {number})",
            )
        return variables[number]

    return _VARIABLE.sub(swap, entry.value)


def _build(block: _Block, variables: dict[int, str], file: Path, ctx: v.Context) -> Command:
    model = COMMANDS[block.name]
    fields = {f.name: f for f in dataclasses.fields(model) if "parser" in f.metadata}
    key_to_field = {name: name for name in fields}
    for name, f in fields.items():
        for alias in f.metadata["aliases"]:
            key_to_field[alias] = name

    given: dict[str, list[_Entry]] = {}
    raw: dict[str, list[str]] = {}
    param_lines: dict[str, int] = {}
    for entry in block.entries:
        if entry.key not in key_to_field:
            raise ChainError(f"parameter '{entry.key}' is not known", file=file, line=entry.line,
                             command=block.name, parameter=entry.key, hint=_close(entry.key, sorted(key_to_field)))
        written = entry.value
        entry.value = _substitute(entry, variables, file, block.name)
        if not entry.value.strip():
            raise ChainError(
                f"{entry.key} = {written}: the value is empty once the variables are put in", file=file,
                line=entry.line, command=block.name, parameter=entry.key,
                hint="give the variable a value (replace or the repeat list) or drop the line",
            )
        name = key_to_field[entry.key]
        earlier = given.setdefault(name, [])
        if earlier and not fields[name].metadata["repeat"]:
            first = earlier[0]
            same = f"'{first.key}'" if first.key == entry.key else f"'{first.key}' and '{entry.key}' (the same parameter)"
            raise ChainError(
                f"parameter {same} given twice (lines {first.line} and {entry.line})", file=file, line=entry.line,
                command=block.name, parameter=entry.key, hint="give it once",
            )
        earlier.append(entry)
        raw.setdefault(entry.key, []).append(entry.value)
        param_lines.setdefault(entry.key, entry.line)
        param_lines.setdefault(name, entry.line)

    kwargs: dict[str, Any] = {}
    for name, entries in given.items():
        meta = fields[name].metadata
        parsed = []
        for entry in entries:
            try:
                parsed.append(meta["parser"](entry.value, ctx))
            except ChainError as e:
                raise e.located(file=file, line=entry.line, command=block.name, parameter=entry.key) from None
            except ValueError as e:
                reason = f"{e} ({COMMENT_HINT})" if "#" in entry.value else str(e)
                raise ChainError(f"{entry.key} = {_shown(entry.value)}", file=file, line=entry.line, command=block.name,
                                 parameter=entry.key, hint=reason) from None
            except OSError as e:  # the file system refused a look (permission, name too long, …)
                raise ChainError(f"{entry.key} = {_shown(entry.value)}", file=file, line=entry.line, command=block.name,
                                 parameter=entry.key, hint=f"cannot check it: {e.strerror or e}") from None
        if meta["repeat"]:
            kwargs[name] = [x for item in parsed for x in (item if isinstance(item, list) else [item])]
        else:
            kwargs[name] = parsed[0]

    for name, f in fields.items():
        if f.metadata["required"] and name not in given:
            raise ChainError(f"parameter '{name}' is missing", file=file, line=block.line, command=block.name,
                             parameter=name, hint=f"add e.g. '{f.metadata['example']}'")

    params = model(**kwargs)

    def fail(parameter: str | None, message: str, hint: str | None = None) -> ChainError:
        line = param_lines.get(parameter, block.line) if parameter else block.line
        return ChainError(message, file=file, line=line, command=block.name, parameter=parameter, hint=hint)

    params._check(fail, set(given), ctx.check_files)
    return Command(block.name, block.line, params, param_lines, raw, file)


def parse_chain_text(
    text: str,
    path: str | os.PathLike[str] = "<chain>",
    variables: dict[int, str] | None = None,
    check_files: bool = True,
) -> Chain:
    """Parse chain ``text``; ``path`` names it in messages. See :func:`load_chain`."""
    file = Path(path)
    blocks = _tokenise(text.removeprefix("\ufeff"), file)
    for block in blocks:
        if block.name not in COMMANDS:
            hint = _close(block.name, list(COMMANDS))
            raise ChainError(f"command '{block.name}' is not known", file=file, line=block.line, command=None,
                             hint=f"{hint} ({COMMENT_HINT})" if "#" in block.name else hint)

    # replace (optional, possibly several) must precede home, which must come next.
    position = 0
    chain_vars: dict[int, str] = {}
    replace_lines: dict[int, int] = {}
    replaces: list[tuple[_Block, dict[int, str]]] = []
    while position < len(blocks) and blocks[position].name == "replace":
        values = _read_replace(blocks[position], file)
        for number, value in values.items():
            if number in chain_vars:
                raise ChainError(f"${number} is defined twice (lines {replace_lines[number]} and "
                                 f"{next(e.line for e in blocks[position].entries if e.key == f'${number}')})",
                                 file=file, line=blocks[position].line, command="replace", hint="define it once")
            chain_vars[number] = value
            replace_lines[number] = next(e.line for e in blocks[position].entries if e.key == f"${number}")
        replaces.append((blocks[position], values))
        position += 1
    if position >= len(blocks):
        raise ChainError("has no home command", file=file,
                         hint="every chain needs 'home' as its first command (after an optional replace)")
    if blocks[position].name != "home":
        raise ChainError(f"the first command is '{blocks[position].name}', but it must be home", file=file,
                         line=blocks[position].line,
                         hint="every chain starts with 'home' (after an optional replace)")
    for block in blocks[position + 1:]:
        if block.name == "home":
            raise ChainError(f"home is given twice (lines {blocks[position].line} and {block.line})", file=file,
                             line=block.line, command="home", hint="a chain has one home")
        if block.name == "replace":
            raise ChainError("replace must come before home", file=file, line=block.line, command="replace",
                             hint="move the replace command to the top of the chain")

    effective = dict(chain_vars)
    for number, value in (variables or {}).items():
        if not isinstance(number, int) or not 1 <= number <= 9:
            raise ChainError(f"variable number {number!r} is out of range", file=file, hint="variables are $1 … $9")
        effective[number] = str(value)

    ctx = v.Context(check_files=check_files)
    commands: list[Command] = []
    for block, values in replaces:
        commands.append(Command(
            "replace", block.line, Replace(values=dict(values)),
            {e.key: e.line for e in block.entries}, {e.key: [e.value] for e in block.entries}, file,
        ))
    for block in blocks[position:]:
        cmd = _build(block, effective, file, ctx)
        commands.append(cmd)
        if cmd.name == "catalog":
            ctx.produced.update(catalog_outputs(params_as(cmd, Catalog).target))
    _check_exports_apart(commands)
    return Chain(file, commands, effective)


def export_files(cmd: Command) -> list[Path]:
    """Every file an export command writes: its target and the files beside it (a VRT's COG, an
    ENVI header; see :func:`registry.companion_paths`)."""
    target = Path(params_as(cmd, Export).target)
    return companion_paths(target) if target.suffix.lower() in FORMATS else [target]


def _check_exports_apart(commands: list[Command]) -> None:
    """Refuse two exports of one chain that write the same file (the later would replace the
    earlier's). Paths are compared resolved (:func:`paths.path_key`). A VRT's COG beside a COG of
    the same name is allowed when both export the same product: the pixels are the same."""
    written: dict[str, tuple[Command, Path]] = {}
    for cmd in commands:
        if cmd.name != "export":
            continue
        target = Path(params_as(cmd, Export).target)
        for path in export_files(cmd):
            key = path_key(path)  # through symlinks, .., case
            if key not in written:
                written[key] = (cmd, path)
                continue
            other, other_path = written[key]
            if other is cmd:
                continue
            if path == target and other_path == Path(params_as(other, Export).target):
                raise cmd.error(f"target = {cmd.raw['target'][0]} is written twice: the export at line "
                                f"{other.line} writes the same file and this one would replace it",
                                parameter="target", hint="give each export its own target")
            if params_as(other, Export).select == params_as(cmd, Export).select:
                continue  # x.vrt's x.tif beside x.tif of the same product: the same pixels
            raise cmd.error(f"target = {cmd.raw['target'][0]} writes {path.name}, which the export at line "
                            f"{other.line} (select = {other.raw['select'][0]}) writes too: one would replace the "
                            "other", parameter="target", hint="give the two exports different names")


def decode_text(data: bytes) -> str:
    """A chain or variable list's bytes as text, whatever editor wrote them.

    UTF-8 (with or without BOM) and UTF-16 with BOM as such; a line that is not UTF-8 is read as
    cp1252 (Windows editors, Latin-1), its bytes outside cp1252 kept as lone surrogates so a file
    name made of them still names the same file (see :func:`paths.on_disk`).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # chains written on Windows editors: decide line by line
        pass
    data = data.removeprefix(b"\xef\xbb\xbf")
    parts = re.split(rb"(\r\n|\r|\n)", data)
    out = []
    for part in parts:
        try:
            out.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(part.decode("cp1252", errors="surrogateescape"))
    return "".join(out)


#: the largest chain file read (a chain is a few hundred bytes; thousands of select lines stay far below)
MAX_CHAIN_BYTES = 4 << 20
#: the largest repeat list read (a row per run: hundreds of thousands of rows fit)
MAX_LIST_BYTES = 32 << 20
#: bytes read at a time, so a file that grows while it is read (or lies about its size) stays bounded
_PIECE = 1 << 20


def _read(file: Path, what: str, noun: str, limit: int | None = None) -> str:
    """The text of ``file`` or a ChainError saying why it cannot be read (``what``: e.g. "chain file").

    Only a regular file is read (a device such as /dev/zero, a FIFO or a socket would never end
    or block), and at most ``limit`` bytes of it, in pieces: a large file given by mistake (an
    archive, an image) is refused before it fills the memory."""
    try:
        kind = kind_of(file)
    except ValueError as e:
        raise ChainError(f"cannot read the {what}", file=file, hint=str(e)) from None
    if kind == "missing":
        raise ChainError(f"{what} not found", file=file, hint=f"looked for {file.absolute()}")
    if kind == "folder":
        raise ChainError(f"is a folder, expected a {what}", file=file,
                         hint=f"give the {noun} inside {file.absolute()}")
    limit = MAX_CHAIN_BYTES if limit is None else limit
    not_regular = ChainError(f"is not a regular file (a device, a pipe or a socket), expected a {what}", file=file,
                             hint=f"save the {noun} as a text file and give its path")
    if kind == "other":
        raise not_regular
    try:
        # O_NONBLOCK: opening a FIFO that replaced the file meanwhile must not wait for a writer
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ChainError(f"cannot read the {what}: {e.strerror or e}", file=file,
                         hint=f"check that {file.absolute()} is readable by this user") from None
    too_large = ChainError(f"is larger than {limit >> 20} MiB, too large for a {what}", file=file,
                           hint=f"check that this is the {noun} (not an archive or an image); "
                                f"a {what} is a short text file")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular
        if st.st_size > limit:
            raise too_large
        pieces: list[bytes] = []
        size = 0
        while True:
            piece = os.read(fd, _PIECE)
            if not piece:
                break
            size += len(piece)
            if size > limit:
                raise too_large
            pieces.append(piece)
    except OSError as e:
        raise ChainError(f"cannot read the {what}: {e.strerror or e}", file=file,
                         hint=f"check that {file.absolute()} is readable by this user") from None
    finally:
        os.close(fd)
    return decode_text(b"".join(pieces))


def load_chain(
    path: str | os.PathLike[str],
    variables: dict[int, str] | None = None,
    check_files: bool = True,
) -> Chain:
    """Read and validate the chain file ``path``.

    ``variables`` (repeat mode: one row of :func:`read_variable_list`) override the chain's own
    ``replace`` values for the same numbers; values it defines for other numbers stay.
    ``check_files=False`` skips checks that files exist (archives, frames, databases).
    Raises :class:`ChainError` for every problem, located at its line.
    """
    file = Path(path)
    return parse_chain_text(_read(file, "chain file", "chain file"), file, variables, check_files)


@dataclass(frozen=True)
class VariableRow:
    """One run of repeat mode: the values for ``$1`` … ``$9`` and the list line they come from."""

    line: int
    values: dict[int, str]


def read_variable_rows(path: str | os.PathLike[str]) -> list[VariableRow]:
    """Read a repeat-mode list: one row per non-empty line; tab-separated column N → ``$N``.

    Cells are stripped of surrounding spaces; an empty cell is left out, so the chain's own
    ``replace`` value (if any) applies to it. Lines starting with ``#`` are comments.
    """
    file = Path(path)
    rows: list[VariableRow] = []
    for number, line in enumerate(split_lines(_read(file, "variable list", "list file", MAX_LIST_BYTES)), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split("\t")
        while cells and not cells[-1].strip():
            cells.pop()  # trailing tabs/spaces mean nothing
        if len(cells) > 9:
            raise ChainError(f"has {len(cells)} columns", file=file, line=number,
                             hint="a repeat list holds at most 9 tab-separated values ($1 … $9)")
        rows.append(VariableRow(number, {i: cell.strip() for i, cell in enumerate(cells, start=1) if cell.strip()}))
    return rows


def read_variable_list(path: str | os.PathLike[str]) -> list[dict[int, str]]:
    """The rows of :func:`read_variable_rows` as plain ``{N: value}`` dicts."""
    return [row.values for row in read_variable_rows(path)]


def load_chain_rows(
    path: str | os.PathLike[str],
    rows: str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> list[tuple[VariableRow | None, Chain]]:
    """Every run of a chain, all validated before the first one starts.

    Without ``rows``: ``[(None, chain)]``. With a variable list: one ``(row, chain)`` per row, each
    chain read with that row's values, so a bad value in row 7 stops the run before row 1 does
    any work. Also refused up front: a list without rows, and rows whose exports would write the
    same file (the later run would replace the earlier one's result).
    Raises :class:`ChainError`; an error of one row names it (``[variables line 7 of list.txt]``).
    """
    if rows is None:
        return [(None, load_chain(path, check_files=check_files))]
    rows_file = Path(rows)
    table = read_variable_rows(rows_file)
    if not table:
        raise ChainError("the variable list holds no row (every line is empty or a comment)", file=rows_file,
                         hint="one line per run: tab-separated values for $1, $2, …")
    runs: list[tuple[VariableRow | None, Chain]] = []
    written: dict[str, int] = {}
    for row in table:
        try:
            chain = load_chain(path, variables=row.values, check_files=check_files)
        except ChainError as e:
            raise e.in_row(rows_file, row.line) from None
        for cmd in chain.find("export"):
            for written_file in export_files(cmd):
                key = path_key(written_file)  # through symlinks, .., case
                if key in written and written[key] != row.line:
                    again = "is written again" if written_file == Path(params_as(cmd, Export).target) else f"writes {written_file.name} again"
                    raise cmd.error(
                        f"target = {cmd.raw['target'][0]} {again}: the run of line {written[key]} "
                        "exports to the same file and this run would replace it", parameter="target",
                        hint="put a variable in the target, e.g. target = ~/results/bestof_$1.tif",
                    ).in_row(rows_file, row.line)
                written[key] = row.line
        runs.append((row, chain))
    return runs
