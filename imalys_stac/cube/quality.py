"""Which asset of an item says which pixels are usable, and how it is read — as lookup tables.

Each provider defines its quality band (Landsat C2 L2: the QA_PIXEL bit field; Sentinel-2 L2A:
the scene classification SCL) as a :class:`~imalys_stac.providers.base.QualityBand`; each rule is
turned once into a table over every code the band can hold (65,536 uint16 values): True = usable.
The import's quality count and the fused pixel kernel both index the same table, so the two can
never disagree. This module only asks the registry which provider an item has.
"""
from __future__ import annotations

import pystac

from ..errors import InputError
from ..providers.base import ALL_CODES, Definition, QualityBand

__all__ = ["ALL_CODES", "Definition", "QualityBand", "quality_band", "quality_band_of"]


def quality_band(item: pystac.Item) -> QualityBand:
    """The quality band of an item's provider. An item no provider owns is read with the quality
    band of the first provider whose quality asset it has."""
    from ..registry import provider_for_item, providers

    provider = provider_for_item(item)
    if provider is not None and provider.quality.asset in item.assets:
        return provider.quality
    for p in providers():
        if p.quality.asset in item.assets:
            return p.quality
    names = " or ".join(p.quality.asset for p in providers())
    raise InputError(f"{item.id} has no quality band ({names}): cannot mask clouds or count quality")


def quality_band_of(groups) -> QualityBand:
    """The one quality band of the tiles of `groups` (scene groups: `.items`); tiles of providers
    with different quality bands cannot be counted or masked together."""
    bands = {quality_band(it) for g in groups for it in g.items}
    if len(bands) > 1:
        raise InputError("cannot mix tiles of different quality bands in one load ("
                         + ", ".join(sorted(b.asset for b in bands)) + "): their providers differ")
    return bands.pop()
