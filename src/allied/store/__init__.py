"""Persistence: the STIX JSON of every object version, with indexed columns, in SQL."""

from allied.store.store import Store, StoredObject

__all__ = ["Store", "StoredObject"]
