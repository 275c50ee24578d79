"""TAXII 2.1: the node's API for partners and standard tools (server side)."""
