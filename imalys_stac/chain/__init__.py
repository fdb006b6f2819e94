"""The Imalys chain language: chain files → typed, validated commands.

No raster or Dask imports here: parsing a chain must be cheap and must fail before any work starts.
"""
from .errors import ChainError
from .models import (
    COMMANDS,
    REDUCERS,
    Catalog,
    Compile,
    Export,
    Home,
    Import,
    Model,
    Reduce,
    Replace,
)
from .parser import (
    Chain,
    Command,
    VariableRow,
    load_chain,
    load_chain_rows,
    parse_chain_text,
    read_variable_list,
    read_variable_rows,
)
from .paths import resolve_archive_pattern
from .period import Period
from .values import Number, as_measured, as_written

__all__ = [
    "COMMANDS",
    "REDUCERS",
    "Catalog",
    "Chain",
    "ChainError",
    "Command",
    "Compile",
    "Export",
    "Home",
    "Import",
    "Model",
    "Number",
    "Period",
    "Reduce",
    "Replace",
    "VariableRow",
    "as_measured",
    "as_written",
    "load_chain",
    "load_chain_rows",
    "parse_chain_text",
    "read_variable_list",
    "read_variable_rows",
    "resolve_archive_pattern",
]
