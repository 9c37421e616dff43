"""NDJSON → Parquet conversion for extracts (optional extra ``parquet``: needs pyarrow).

Two streaming passes over a local NDJSON file in batches: the first unifies the schema of every
batch (records may gain fields over time), the second writes row groups. Memory stays bounded by the
batch size, not the file size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

BATCH_RECORDS = 10_000


def _batches(path: str, size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                batch.append(json.loads(line))
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def require_pyarrow() -> Any:
    """Import ``pyarrow.parquet`` (the extracts call it before any job when ``output_format='parquet'``).

    :raises CloudElementsConfigError: pyarrow is not installed, naming the extra to install.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CloudElementsConfigError(
            "output_format='parquet' needs pyarrow: pip install 'airflow-provider-cloudelements[parquet]'"
        ) from None
    return pq


def ndjson_to_parquet(path: str, out: BinaryIO, *, batch_records: int = BATCH_RECORDS) -> int:
    """Write the NDJSON file at ``path`` as Parquet to ``out``; returns the number of rows.

    :raises CloudElementsConfigError: when pyarrow is not installed.
    """
    pq = require_pyarrow()
    import pyarrow as pa

    schemas = [pa.Table.from_pylist(batch).schema for batch in _batches(path, batch_records)]
    if not schemas:
        schema = pa.schema([])
    else:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in _batches(path, batch_records):
            table = pa.Table.from_pylist(batch, schema=schema)
            writer.write_table(table)
            rows += table.num_rows
    return rows
