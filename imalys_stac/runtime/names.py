"""Names and constants that the runtime's modules share, in a leaf module (it imports nothing of
the package): the cluster runtime, the worker plugins unpickled on every worker, and the progress
display all read them without importing one another."""
from __future__ import annotations

#: the name of the scheduler plugin that counts a client's tasks (runtime.plugins.TaskCounter)
TASK_COUNTER = "imalys-progress"

#: the name of the worker plugin that sets the GDAL settings on every worker
GDAL_ENV_PLUGIN = "imalys-gdal-env"

# GDAL settings for the client and every worker: a small block cache (tiles are decoded once by
# the tile reader, which keeps what later chunks need), a cache for archive members read through
# /vsitar/, and for remote hrefs (/vsicurl/, /vsis3/, /vsigs/) timeouts, retries and no directory
# listing on open. GDAL_DISABLE_READDIR_ON_OPEN = TRUE (not EMPTY_DIR): GDAL still probes named
# sidecars such as an ENVI .hdr one by one, it only skips listing the folder (an HTTP request per open).
GDAL_ENV = {
    "GDAL_CACHEMAX": "64",  # MB; IMALYS_GDAL_CACHEMAX overrides it, a worker with a memory limit sets its own (plugins.py)
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "20",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "2",
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.tar,.zip,.jp2,.xml,.txt,.json,.vrt",
}
