"""Which distributed Client dask computes on right now (a leaf module: the writers, the progress
display and the cluster runtime ask it without importing one another)."""
from __future__ import annotations

import sys
from typing import Any


def active_client() -> Any | None:
    """The distributed Client dask computes on right now, or None. Without `distributed`
    imported there is none, and asking would import it (a second of start-up)."""
    if "distributed" not in sys.modules:
        return None
    import dask
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    scheduler = dask.base.get_scheduler()
    return client if getattr(scheduler, "__self__", None) is client else None
