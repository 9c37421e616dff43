"""Atomic landing of extract files in object storage (any fsspec scheme via ``ObjectStoragePath``).

A file is first written to a hidden temporary sibling (``.<name>.<uuid>.part``) and moved to its
final path only once it is complete and reconciled, so a failed or partial download never leaves a
file at the final path. On object stores the object is uploaded straight to its final key instead, which
the store shows only once the upload is complete (no copy; :mod:`airflow_provider_cloudelements.storage`).

Publishing rule of a partition folder (:func:`publish_manifest`): every run writes **run-unique**
files ``<resource>.<token>.<kind>`` (:func:`run_token`: the snapshot time in milliseconds plus a short
unique part, so tokens sort by snapshot), then ``_manifest.json`` **last**, which always names files that
exist beside it. A manifest is never replaced by one with an earlier snapshot time (the superseded run
removes its own files and hands on the manifest in place); with an equal time the later publisher wins.
Once a manifest is in place the folder is cleaned: the files the replaced manifest named, files of runs
with an earlier snapshot time (a crashed or superseded run's leftovers, a failed run's errors file) and
legacy fixed names are removed; files of runs with the same or a later snapshot time (a concurrent run
still landing) are kept; hidden ``.part`` temporaries are removed only when older than
:data:`STALE_TEMP_AGE`. Local folders do read-compare-write-clean under an ``flock`` of the folder;
object stores re-read the manifest after writing. A ``kill -9`` at any point leaves the previous manifest
and the files it names intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, cast

from airflow.sdk import ObjectStoragePath

from airflow_provider_cloudelements import storage
from airflow_provider_cloudelements.models.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

FORMAT_SUFFIX = {"ndjson": "ndjson", "csv": "csv", "parquet": "parquet"}
#: Hidden ``.part`` temporaries older than this are a dead run's (a download is written continuously;
#: a live one is never this old without being touched) and are removed by the next publish.
STALE_TEMP_AGE = timedelta(hours=6)
_TOKEN_RE = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{8}$")


def partition_path(
    base: ObjectStoragePath | str,
    *,
    element_key: str,
    instance_id: int,
    resource: str,
    window_start: datetime | None,
    window_end: datetime | None,
) -> ObjectStoragePath:
    """Folder of one extract: ``<base>/<element_key>/instance=<id>/<resource>/window=<start>_<end>``.

    Times are UTC, formatted ``YYYYMMDDTHHMMSSZ``, with ``.ffffff`` (microseconds) before the ``Z`` when
    the instant is not a whole second, so two different windows never share a folder; an open bound is
    written ``open``. The same interval always maps to the same folder, so a rerun's manifest replaces
    the earlier run's (:func:`publish_manifest`).
    """
    root = base if isinstance(base, ObjectStoragePath) else ObjectStoragePath(base)
    label = f"window={_stamp(window_start)}_{_stamp(window_end)}"
    return root / element_key / f"instance={instance_id}" / resource / label


def _stamp(value: datetime | None) -> str:
    if value is None:
        return "open"
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return value.strftime("%Y%m%dT%H%M%S") + fraction + "Z"


def run_token(snapshot_at: datetime, unique: str | None = None) -> str:
    """Run-unique, snapshot-ordered part of landed file names: ``YYYYMMDDTHHMMSSmmmZ-<8 hex>``.

    :param snapshot_at: the extract's snapshot time (aware).
    :param unique: stable identity of the run (a bulk job id: a retry landing the same job writes the
        same names); ``None`` = random.
    """
    utc = snapshot_at.astimezone(timezone.utc)
    stamp = utc.strftime("%Y%m%dT%H%M%S") + f"{utc.microsecond // 1000:03d}Z"
    tail = hashlib.sha256(unique.encode()).hexdigest()[:8] if unique is not None else uuid.uuid4().hex[:8]
    return f"{stamp}-{tail}"


def landed_name(resource: str, token: str, kind: str) -> str:
    """Return the file name of one landed file: ``<resource>.<token>.<kind>``.

    ``kind`` is ``ndjson``, ``csv``, ``parquet``, ``deleted.ndjson`` or ``errors.ndjson``.
    """
    return f"{resource}.{token}.{kind}"


def token_of(name: str) -> str | None:
    """The run token in a landed file name (:func:`landed_name`), or ``None`` for other names."""
    parts = name.split(".")
    return parts[1] if len(parts) >= 3 and _TOKEN_RE.match(parts[1]) else None


def temp_sibling(final: ObjectStoragePath) -> ObjectStoragePath:
    """A hidden, unique temporary path next to ``final`` (same bucket/folder, so the move is cheap)."""
    return final.parent / f".{final.name}.{uuid.uuid4().hex}.part"


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".part")


@contextmanager
def atomic_write(final: ObjectStoragePath, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary sibling of ``final`` for writing; move it over ``final`` on clean exit.

    On any exception the temporary file is removed and ``final`` is left as it was (an existing
    file from an earlier run stays untouched). Callers that must validate the content before
    publishing use :func:`staged_file` instead.
    """
    with staged_file(final, mode) as (handle, publish):
        yield handle
        handle.flush()
        publish()


@contextmanager
def staged_file(final: ObjectStoragePath, mode: str = "wb") -> Iterator[tuple[BinaryIO, Callable[[], None]]]:
    """Yield ``(handle, publish)``: write to ``handle``, call ``publish()`` to move it to ``final``.

    If the block exits without ``publish()`` having been called, or raises, the temporary file is
    deleted: nothing is ever half-written at ``final``. On object stores the object is uploaded straight
    to ``final`` and appears only when published (:func:`~airflow_provider_cloudelements.storage.staged_object`:
    no copy, no bucket or folder created).
    """
    if not storage.is_local(final):
        with storage.staged_object(final, mode) as staged:
            yield staged
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    published = False
    handle = cast(BinaryIO, tmp.open(mode))  # binary modes only ("wb"): callers write bytes

    def publish() -> None:
        nonlocal published
        if not handle.closed:
            handle.close()
        _replace(tmp, final)
        published = True

    try:
        yield handle, publish
    finally:
        if not handle.closed:
            handle.close()
        if not published:
            remove_quietly(tmp)


def _replace(src: ObjectStoragePath, dst: ObjectStoragePath) -> None:
    """Move ``src`` over ``dst`` (atomic ``os.replace`` on local files, copy+delete elsewhere)."""
    if dst.protocol in ("file", "local", ""):
        import os

        os.replace(src.path, dst.path)
        return
    if dst.exists():
        dst.unlink()
    src.rename(dst)


def remove_quietly(path: ObjectStoragePath) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:  # best effort: never mask the original error
        log.warning("Could not remove temporary file %s", path)


#: Records encoded per file write (one write per record cost ~25% of a 100k paged pull, benchmarks/).
WRITE_BATCH_RECORDS = 1000


def write_ndjson(
    handle: BinaryIO,
    records: Iterable[Any],
    *,
    progress: Callable[[int, int], None] | None = None,
    batch_records: int = WRITE_BATCH_RECORDS,
) -> tuple[int, int]:
    """Write ``records`` as NDJSON (compact UTF-8, one object per line) in batches.

    :param progress: called with ``(records, bytes)`` written so far after each batch.
    :returns: ``(records, bytes)`` written.
    """
    from airflow_provider_cloudelements.utils import jsonfast

    count = nbytes = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal count, nbytes
        if batch:
            data = ("\n".join(batch) + "\n").encode()
            handle.write(data)
            count += len(batch)
            nbytes += len(data)
            batch.clear()
            if progress is not None:
                progress(count, nbytes)

    for record in records:
        batch.append(jsonfast.dumps(record))
        if len(batch) >= batch_records:
            flush()
    flush()
    return count, nbytes


def write_json_atomic(final: ObjectStoragePath, payload: Any) -> None:
    """Write ``payload`` as pretty JSON to ``final`` atomically."""
    with atomic_write(final, "wb") as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def manifest_files(manifest: Any) -> set[str]:
    """Base names of the files a manifest names (``path``, ``deleted_path``, ``errors_path``)."""
    if not isinstance(manifest, dict):
        return set()
    return {
        str(manifest[k]).rstrip("/").rsplit("/", 1)[-1]
        for k in ("path", "deleted_path", "errors_path")
        if manifest.get(k)
    }


def manifest_token(manifest: Any) -> str | None:
    """Run token of a manifest's data file, ``None`` for a manifest of fixed (pre-v2) names."""
    if not isinstance(manifest, dict) or not manifest.get("path"):
        return None
    return token_of(str(manifest["path"]).rstrip("/").rsplit("/", 1)[-1])


def read_manifest(folder: ObjectStoragePath) -> dict[str, Any] | None:
    """The folder's ``_manifest.json`` as a dict, or ``None`` when absent or unreadable."""
    path = folder / MANIFEST_NAME
    try:
        with path.open("rb") as handle:
            value = json.loads(handle.read())
    except (FileNotFoundError, ValueError, OSError):
        return None
    return value if isinstance(value, dict) else None


@contextmanager
def _folder_lock(folder: ObjectStoragePath) -> Iterator[bool]:
    """Hold an exclusive lock on a local folder and yield ``True``; on object stores yield ``False``.

    The lock is a ``flock`` on the directory itself (no lock file); without a lock
    :func:`publish_manifest` re-reads after writing.
    """
    if folder.protocol not in ("file", "local", ""):
        yield False
        return
    import fcntl
    import os

    fd = os.open(folder.path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def publish_manifest(folder: ObjectStoragePath, manifest: dict[str, Any]) -> dict[str, Any]:
    """Publish ``manifest`` as the folder's ``_manifest.json`` unless a newer one is in place; clean up.

    ``manifest`` must name run-unique files (:func:`landed_name`) that already exist in ``folder``.
    When the folder's current manifest has a later snapshot (token time) — a newer extract of the same
    interval landed meanwhile — it is kept, this run's files are removed, and the current manifest is
    returned instead: the caller hands on the newer snapshot, never a manifest naming files that are
    gone. An equal snapshot time is replaced (the later publisher wins).

    :returns: the manifest now in place (``manifest`` itself, or the newer one).
    """
    token = manifest_token(manifest)
    for _ in range(3):
        with _folder_lock(folder) as locked:
            current = read_manifest(folder)
            current_token = manifest_token(current)
            if current is not None and current_token is not None and _later(current_token, token):
                log.warning(
                    "A newer extract of this interval is already published in %s (%s > %s): keeping it",
                    folder,
                    current_token,
                    token,
                )
                _clean(folder, current, manifest)
                return current
            write_json_atomic(folder / MANIFEST_NAME, manifest)
            if locked:  # local folder: read-compare-write-clean is atomic under the lock
                _clean(folder, manifest, current)
                return manifest
        # object store, no compare-and-swap: check what is in place now
        in_place = read_manifest(folder)
        in_place_token = manifest_token(in_place)
        if in_place_token == token:
            _clean(folder, manifest, current)
            return manifest
        if in_place is not None and in_place_token is not None and not _later(token, in_place_token):
            return in_place  # a concurrent run with the same or a later snapshot won
    log.warning("The manifest in %s kept changing under concurrent runs; returning the one in place", folder)
    in_place = read_manifest(folder)
    return in_place if in_place is not None else manifest


def _snapshot_part(token: str | None) -> str:
    return token.split("-", 1)[0] if token else ""


def _later(token: str | None, than: str | None) -> bool:
    """Whether run ``token`` has a strictly later snapshot time than ``than``.

    A time without milliseconds (a paged extract's ``snapshot_at``, the server ``Date`` floored to the second) is only
    known to the second, so against it only the seconds are compared: a paged rerun taken after a bulk run of the same
    second is not "older" than the bulk job's ``createdDate`` (it replaces it, the later publisher winning a tie)
    instead of having its fresher files dropped.
    """
    mine, other = _snapshot_part(token), _snapshot_part(than)
    if mine[15:18] == "000" or other[15:18] == "000":  # YYYYMMDDTHHMMSS mmm Z
        return mine[:15] > other[:15]
    return mine > other


def _clean(folder: ObjectStoragePath, current: dict[str, Any], replaced: dict[str, Any] | None) -> None:
    """Remove what ``current`` (the manifest in place) does not name.

    That is the files ``replaced`` named, files of runs with an earlier snapshot time, legacy fixed names,
    and temporaries older than :data:`STALE_TEMP_AGE`. Files of runs with the same or a later snapshot time
    are kept (a concurrent run may still be landing them).
    """
    keep = manifest_files(current) | {MANIFEST_NAME}
    drop = manifest_files(replaced) - keep
    token = manifest_token(current)
    now = time.time()
    for child in folder.iterdir():
        name = child.name
        if name in keep:
            continue
        if _is_temp(name):
            if now - _mtime(child, now) < STALE_TEMP_AGE.total_seconds():
                continue
        elif name not in drop:
            other = token_of(name)
            if other is not None and (token is None or not _later(token, other)):
                continue  # same or later snapshot: possibly a concurrent run still landing
        log.info("Removing stale file %s", child)
        remove_quietly(child)


def _mtime(path: ObjectStoragePath, default: float) -> float:
    """Return the last-modified time (epoch seconds) from the filesystem's ``info``, ``default`` when unknown.

    The field is the local ``mtime``, S3 ``LastModified`` or GCS ``updated``.
    """
    try:
        info = path.fs.info(path.path)
    except (OSError, ValueError):
        return default
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return default


class ProgressLogger:
    """Callback for long downloads: logs records, MB and MB/s at most every ``every_seconds`` seconds.

    With ``total`` (a bulk job's ``recordsCount``) the line also gives the share done:
    ``Bulk job 42 download: 12000 of 48000 records (25%), 9.1 MB, 3.0 MB/s``.
    """

    def __init__(
        self,
        label: str,
        *,
        every_seconds: float = 10.0,
        logger: logging.Logger | None = None,
        total: int | None = None,
    ) -> None:
        self.label = label
        self.total = total if isinstance(total, int) and total > 0 else None
        self.every_seconds = every_seconds
        self.log = logger or log
        self.started = time.monotonic()
        self._last = self.started

    def __call__(self, lines: int, nbytes: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_seconds:
            self._last = now
            self.log.info("%s", self.summary(lines, nbytes))

    def summary(self, lines: int, nbytes: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        mb = nbytes / 1_000_000
        done = (
            f"{lines} of {self.total} records ({100 * lines / self.total:.0f}%)" if self.total else f"{lines} records"
        )
        return f"{self.label}: {done}, {mb:.1f} MB, {mb / elapsed:.1f} MB/s"
