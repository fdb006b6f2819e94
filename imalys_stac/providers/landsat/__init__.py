"""Landsat Collection 2 Level-2: USGS archives (``archive``), their MTL (``mtl``), QA_PIXEL bits
(``qa``), band tables (``bands``), item fields (``items``) and the provider (``provider``)."""
from .provider import PROVIDER, LandsatProvider

__all__ = ["PROVIDER", "LandsatProvider"]
