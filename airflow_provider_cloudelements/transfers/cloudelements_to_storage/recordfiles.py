"""Record files of an extract: filtered copies of a downloaded bulk file and the Parquet writer."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple


class Copied(NamedTuple):
    """What :func:`copy_records` did: records read, records written, bytes written."""

    read: int
    written: int
    bytes: int


def copy_records(raw: BinaryIO, out: Any, *, fmt: str, keep: Callable[[Any], bool] | None) -> Copied:
    """Copy the records of a downloaded bulk file to ``out``, keeping those ``keep`` accepts (all when ``None``).

    ``fmt`` is ``json`` (NDJSON) or ``csv`` (header + records). NDJSON lines are copied byte for byte
    (blank lines dropped); CSV records are parsed with the csv module (a line break inside a quoted field
    stays inside its record) and rewritten.

    :returns: records read, records written, bytes written.
    """
    read = written = nbytes = 0
    if fmt == "csv":
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        buffer = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for row in reader:
            read += 1
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(reader.fieldnames or []), lineterminator="\n")
                writer.writeheader()
            if keep is None or keep(row):
                writer.writerow(row)
                written += 1
            if buffer.tell() >= 1 << 20:
                nbytes += _drain(buffer, out)
        if writer is None and reader.fieldnames:
            csv.DictWriter(buffer, fieldnames=list(reader.fieldnames), lineterminator="\n").writeheader()
        nbytes += _drain(buffer, out)
        text.detach()
        return Copied(read, written, nbytes)
    for line in raw:
        if not line.strip():
            continue
        read += 1
        if keep is None or keep(json.loads(line)):
            data = line if line.endswith(b"\n") else line + b"\n"
            out.write(data)
            written += 1
            nbytes += len(data)
    return Copied(read, written, nbytes)


def _drain(buffer: io.StringIO, out: Any) -> int:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    if data:
        out.write(data)
    return len(data)


class ParquetSink:
    """Buffer NDJSON lines in a local temp file, then write Parquet to ``handle`` on close."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.tmp = tempfile.NamedTemporaryFile(prefix="ce-parquet-", suffix=".ndjson")

    def write(self, line: bytes) -> None:
        self.tmp.write(line)

    def close(self) -> None:
        from airflow_provider_cloudelements.transfers.cloudelements_to_storage.parquet import ndjson_to_parquet

        self.tmp.flush()
        ndjson_to_parquet(self.tmp.name, self.handle)
        self.tmp.close()
