"""imalys-stac: Imalys process chains on STAC, stackstac and Dask.

The Python API (documented in docs/api.md), imported on first use so that ``import imalys_stac``
stays cheap (no Dask, rasterio or numba until a function is called):

- :func:`run_chain` — run a chain file (or text); ``.products``, ``.exports``, ``.open(name)``
- :func:`catalog` — archives → static STAC catalog
- :func:`search` — items of a catalog, an archive folder or a STAC API
- :func:`load` — items → lazy masked, calibrated (time, band, y, x) cube with ``quality``
- :func:`reduce` — cube → composite (``bestof``, ``median``, …)
- :func:`to_cog` — DataArray → Cloud Optimized GeoTIFF and its STAC item
- :func:`plan` — what a chain would do, without writing
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: public name → the module that defines it (imported when the name is first used)
_API = {name: "imalys_stac.api" for name in
        ("run_chain", "catalog", "search", "load", "reduce", "to_cog", "plan", "ChainResult")}
_API.update(ImalysError="imalys_stac.errors", ChainError="imalys_stac.chain")

__all__ = ["ChainError", "ChainResult", "ImalysError", "__version__", "catalog", "load", "plan", "reduce",
           "run_chain", "search", "to_cog"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'imalys_stac' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
