"""Engines started once for the matching tests: Spark takes seconds to start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from allied.matching.duck import DuckDBEngine
from allied.matching.spark import SparkEngine


@pytest.fixture(scope="session")
def engine() -> Iterator[DuckDBEngine]:
    opened = DuckDBEngine(memory_limit="256MB", threads=2)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkEngine]:
    """Spark in local mode, on two cores."""
    opened = SparkEngine("local[2]", partitions=2)
    yield opened
    opened.close()
