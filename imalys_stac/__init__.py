"""imalys-stac: Imalys process chains on STAC, stackstac and Dask."""

__version__ = "0.1.0"
