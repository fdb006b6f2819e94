"""Sentinel-2 Level-2A: ESA SAFE zips (``archive``: reader, band table, SCL classes), their item
fields (``items``) and the provider (``provider``)."""
from .provider import PROVIDER, Sentinel2Provider

__all__ = ["PROVIDER", "Sentinel2Provider"]
