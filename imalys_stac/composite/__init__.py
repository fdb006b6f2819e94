"""Compositing: per-pixel reducers over time (numba kernels) run blockwise on Dask.

``reduce_stack(cube, method, ...)`` turns a ``(time, band, y, x)`` stack into one
``(band, y, x)`` image with the kernel the method's registry entry names
(``imalys_stac.registry.REDUCERS``; the built-in kernels are in :mod:`.methods`);
:mod:`.reference` holds the plain loop versions the entries name for tests. No I/O here.
"""

from . import reference
from .reduce import BLOCK_BYTES, METHODS, reduce_stack

__all__ = ["reduce_stack", "METHODS", "reference", "BLOCK_BYTES"]
