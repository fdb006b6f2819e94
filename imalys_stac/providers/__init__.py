"""Product lines behind one interface (:mod:`.base`), split into the archive format (reading
files) and the collection profile (what a collection means); one subpackage each (``landsat``,
``sentinel2``), registered in ``imalys_stac.registry``. A STAC-API-only collection is a
:class:`~.profile.Profile`, described as data. Generic code imports only :mod:`.base`,
:mod:`.profile` and :mod:`.common` and asks the registry for a provider."""
from .base import (
    ArchiveFormat,
    CollectionProfile,
    ContainerFormat,
    ItemFields,
    Provider,
    QualityBand,
    SceneMetadata,
)
from .profile import Profile

__all__ = ["ArchiveFormat", "CollectionProfile", "ContainerFormat", "ItemFields", "Profile", "Provider",
           "QualityBand", "SceneMetadata"]
