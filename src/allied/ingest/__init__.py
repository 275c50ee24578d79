"""Importers: STIX files now; MISP events, CSV and text reports later."""
