"""STAC items from archives, the static catalog (atomic, incremental), its index, and search."""
from .catalog import CatalogReport, build_catalog
from .items import item_from_archive
from .search import Query, item_from_dict, open_items, read_item, search

__all__ = ["CatalogReport", "Query", "build_catalog", "item_from_archive", "item_from_dict", "open_items", "read_item", "search"]
