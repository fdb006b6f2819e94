#!/bin/sh
# Entrypoint of the imalys-stac image: one image is the chain runner, the Dask scheduler and the
# Dask workers, whatever the operator or the user passes as the container's arguments.
#
#   run CHAIN | check CHAIN | demo [DIR] | serve ... | --help | --version -> imalys-stac ...
#   dask-scheduler ... | dask-worker ...     -> dask scheduler ... | dask worker ...
#                                               (what dask-kubernetes' generated cluster spec passes;
#                                                distributed no longer installs those two scripts)
#   dask ... | python ... | x_Imalys ... | r_Imalys ... | any program on PATH -> run as given
#   anything else (a newer subcommand)       -> imalys-stac ...
#   (nothing)                                -> imalys-stac --help
set -e
case "${1-}" in
    "")
        exec imalys-stac --help ;;
    run|check|demo|serve|-h|--help|--version)
        exec imalys-stac "$@" ;;
    dask-scheduler|dask-worker)
        role=${1#dask-}
        shift
        exec dask "$role" "$@" ;;
    */*)
        exec "$@" ;;
esac
if command -v "$1" >/dev/null 2>&1; then
    exec "$@"
fi
exec imalys-stac "$@"
