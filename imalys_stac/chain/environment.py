"""The environment variables that override `home` (`IMALYS_SCHEDULER`, `IMALYS_WORKERS`,
`IMALYS_MEMORY`, set by batch jobs that must not edit chains): checked with the same parsers and
rules as the parameters they stand for, so a bad value is a located user error at `check` time,
not a crash when the run starts its workers."""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping

from . import values as v
from .errors import ChainError
from .models import Home

#: variable → the `home` parameter it overrides
OVERRIDES = {"IMALYS_SCHEDULER": "scheduler", "IMALYS_WORKERS": "workers", "IMALYS_MEMORY": "memory"}
#: scheduler words the runtime also takes from the environment (older job files)
_SCHEDULER_SYNONYMS = {"threads": "local", "threaded": "local"}


def environment_overrides(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """``{parameter: (variable, value)}`` for every override that is set and not empty."""
    env = os.environ if environ is None else environ
    return {param: (name, env[name]) for name, param in OVERRIDES.items() if env.get(name)}


def check_environment(home_cmd, environ: Mapping[str, str] | None = None) -> Home:
    """The `home` parameters in effect once the environment overrides them; a bad value raises a
    ChainError at the home command that names the variable, its value and what is accepted.
    ``home_cmd``: the chain's parsed home :class:`~imalys_stac.chain.parser.Command`."""
    found = environment_overrides(environ)
    home: Home = home_cmd.params
    if not found:
        return home
    fields = {f.name: f for f in dataclasses.fields(Home)}
    changes = {}
    for param, (name, value) in found.items():
        text = _SCHEDULER_SYNONYMS.get(value.strip().lower(), value) if param == "scheduler" else value
        try:
            changes[param] = fields[param].metadata["parser"](text, v.Context(check_files=False))
        except ValueError as e:
            raise home_cmd.error(f"the environment variable {name} = {value!r} (it overrides home {param})",
                                 parameter=param, hint=f"{e}; correct it or unset it ({name}=)") from None
    merged = dataclasses.replace(home, **changes)

    def fail(parameter: str | None, message: str, hint: str | None = None) -> ChainError:
        where = next((name for p, (name, _) in found.items() if p == parameter), None)
        if where is not None:
            hint = f"{hint + '; ' if hint else ''}{parameter} comes from the environment variable {where}: correct it or unset it"
        return home_cmd.error(message, parameter=parameter, hint=hint)

    merged._check(fail, {f for f in fields if getattr(merged, f) is not None}, False)
    return merged
