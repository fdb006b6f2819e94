"""Product lines behind one interface (:mod:`.base`); one subpackage each (``landsat``,
``sentinel2``), listed in ``imalys_stac.registry.PROVIDERS``. Generic code imports only
:mod:`.base` and :mod:`.common` and asks the registry for a provider."""
from .base import ContainerFormat, ItemFields, Provider, QualityBand, SceneMetadata

__all__ = ["ContainerFormat", "ItemFields", "Provider", "QualityBand", "SceneMetadata"]
