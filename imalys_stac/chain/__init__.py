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
from .parser import Chain, Command, load_chain, parse_chain_text, read_variable_list
from .paths import resolve_archive_pattern
from .period import Period

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
    "Period",
    "Reduce",
    "Replace",
    "load_chain",
    "parse_chain_text",
    "read_variable_list",
    "resolve_archive_pattern",
]
