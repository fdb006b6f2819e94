"""Every exception class the package defines belongs to the ``ImalysError`` family (issue 18), so
the CLI's rule "an ImalysError is the user's, anything else is a bug" holds for all of them.
The one exception is ``Interrupted`` (a signal), which derives from KeyboardInterrupt on purpose."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import imalys_stac
from imalys_stac.errors import ImalysError, Interrupted

#: modules that need an optional extra to import
OPTIONAL = {"imalys_stac.runtime.kubernetes"}


def _package_exceptions() -> dict[str, type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(imalys_stac.__path__, "imalys_stac."):
        if info.name in OPTIONAL or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_error_class_is_in_the_family():
    classes = _package_exceptions()
    assert len(classes) >= 10  # the walk saw the package's error classes
    outside = sorted(name for name, cls in classes.items() if cls is not Interrupted and not issubclass(cls, ImalysError))
    assert not outside, f"error classes outside the ImalysError family: {outside}"
