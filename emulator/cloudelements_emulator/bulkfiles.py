"""Bulk file formats (reference §4.1): NDJSON, CSV rendering and upload parsing.

CSV: nested objects are flattened to dotted columns (``customerRef.value``); arrays are written as
JSON text in one cell; columns are the union of all keys in first-seen order. Uploads accept CSV
(header row; dotted columns are un-flattened, cells starting with ``[``/``{`` are JSON-decoded,
empty cells omitted), NDJSON (one object per line) or a JSON array.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

CHUNK = 1 << 20


def flatten(obj: dict[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flatten(value, name + ".", out)
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = value
    return out


def unflatten(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or cell is None or cell == "":
            continue
        value: Any = cell
        stripped = cell.strip()
        if stripped[:1] in ("[", "{"):
            try:
                value = json.loads(stripped)
            except ValueError:
                value = cell
        target = out
        parts = column.split(".")
        for part in parts[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            target = nxt
        else:
            target[parts[-1]] = value
    return out


def iter_file(path: str, limit: int | None = None) -> Iterator[bytes]:
    """Stream a file in 1 MiB chunks; stop (raise) after ``limit`` bytes to emulate a dropped connection."""
    sent = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return
            if limit is not None and sent + len(chunk) > limit:
                yield chunk[: max(0, limit - sent)]
                raise ConnectionAbortedError("download dropped (injected fault)")
            sent += len(chunk)
            yield chunk


def csv_columns(path: str) -> list[str]:
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                for key in flatten(json.loads(line)):
                    seen.setdefault(key, None)
    return list(seen)


def iter_csv(path: str, limit: int | None = None) -> Iterator[bytes]:
    """Render the NDJSON snapshot at ``path`` as CSV, in bounded memory (two passes)."""
    columns = csv_columns(path)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    sent = 0

    def drain() -> bytes:
        data = buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
        return data

    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                writer.writerow(flatten(json.loads(line)))
            if buf.tell() >= CHUNK:
                chunk = drain()
                if limit is not None and sent + len(chunk) > limit:
                    yield chunk[: max(0, limit - sent)]
                    raise ConnectionAbortedError("download dropped (injected fault)")
                sent += len(chunk)
                yield chunk
    tail = drain()
    if limit is not None and sent + len(tail) > limit:
        yield tail[: max(0, limit - sent)]
        raise ConnectionAbortedError("download dropped (injected fault)")
    yield tail


def parse_upload(fh: BinaryIO, fmt: str | None, filename: str | None) -> Iterator[tuple[int, Any, str | None]]:
    """Yield ``(line number, record or raw text, parse error or None)`` from an uploaded file."""
    text: io.TextIOBase = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
    name = (filename or "").lower()
    kind = (fmt or "").lower()
    if not kind:
        kind = "csv" if name.endswith(".csv") else "json" if name.endswith((".json", ".ndjson", ".jsonl")) else ""
    if not kind:
        head = text.read(1)
        while head and head.isspace():
            head = text.read(1)
        rest = text.read()
        text = io.StringIO(head + rest)
        kind = "json" if head in ("{", "[") else "csv"
    if kind == "csv":
        for n, row in enumerate(csv.DictReader(text), start=2):
            yield n, unflatten(row), None
        return
    content = text.read()
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except ValueError as err:
            yield 1, content[:200], f"Invalid JSON array: {err}"
            return
        for n, item in enumerate(items, start=1):
            yield n, item, None if isinstance(item, dict) else "Record is not a JSON object"
        return
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            yield n, line[:200], f"Invalid JSON: {err}"
            continue
        yield n, item, None if isinstance(item, dict) else "Record is not a JSON object"
