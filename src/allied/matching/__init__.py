"""Big-data matching: logs against shared indicators (DESIGN.md, "Big-data matching")."""
