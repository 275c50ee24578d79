"""Persistence: the STIX JSON of every object version, with indexed columns, in SQL."""
