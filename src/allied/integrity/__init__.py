"""Integrity: node keys now; origin signatures and the Merkle ledger build on them."""
