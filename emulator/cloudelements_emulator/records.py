"""Record storage per (instance, resource): lazy deterministic generation + CRUD on SQLite.

Rows keep the served JSON text verbatim, so hub lists and bulk files are assembled without
re-serialising. ``seq`` (1-based creation order) is derivable from every element's record id
(see :func:`generator.seq_of`), so id lookups are primary-key lookups.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cloudelements_emulator import generator
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.store import Store

log = logging.getLogger(__name__)
_BATCH = 20_000


def dumps(obj: object) -> str:
    """Compact JSON used for every stored/served record."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class Row:
    seq: int
    created: int
    updated: int
    deleted: bool
    data: str
    changed: int = 0  # exact epoch ms of the last change (``updated`` may be truncated to seconds)

    def obj(self) -> dict:
        return json.loads(self.data)


@dataclass(frozen=True)
class Window:
    """SQL-level filter on the indexed ``updated`` column (epoch ms; ``lo`` inclusive, ``hi`` exclusive)."""

    lo: int | None = None
    hi: int | None = None
    lo_strict: bool = False
    hi_inclusive: bool = False

    def sql(self) -> tuple[str, list[int]]:
        parts, args = [], []
        if self.lo is not None:
            parts.append("updated > ?" if self.lo_strict else "updated >= ?")
            args.append(self.lo)
        if self.hi is not None:
            parts.append("updated <= ?" if self.hi_inclusive else "updated < ?")
            args.append(self.hi)
        return (" AND ".join(parts), args)


class RecordRepo:
    """Datasets of all instances.

    :ivar composite_qbo_ids: QuickBooks Online ids are stored as ``<id>|<syncToken>``
        (``EmulatorConfig.qbo_sync_token_ids``).
    """

    composite_qbo_ids: bool = False

    def __init__(self, store: Store, seed: int, anchor_ms: int, count_for: Callable[[str], int]) -> None:
        self.store = store
        self.seed = seed
        self.anchor_ms = anchor_ms
        self.count_for = count_for
        self._gen_locks: dict[tuple[int, str], threading.Lock] = {}
        self._gen_guard = threading.Lock()
        self._known: dict[tuple[int, str], str] = {}

    # ------------------------------------------------------------ datasets
    @staticmethod
    def table_name(instance_id: int, resource: str) -> str:
        return f"r{int(instance_id)}_{re.sub(r'[^a-z0-9]', '_', resource.lower())}"

    def is_generated(self, instance_id: int, resource: str) -> bool:
        key = (instance_id, resource)
        if key in self._known:
            return True
        row = self.store.conn().execute("SELECT tbl FROM datasets WHERE instance_id=? AND resource=?", key).fetchone()
        if row:
            self._known[key] = row[0]
        return row is not None

    def generated_resources(self, instance_id: int) -> list[str]:
        rows = self.store.conn().execute("SELECT resource FROM datasets WHERE instance_id=?", (instance_id,))
        return [r[0] for r in rows]

    def ensure(self, element: ElementDef, instance_id: int, resource: str) -> str:
        """Return the table of ``(instance, resource)``, generating its records on first access."""
        key = (instance_id, resource)
        tbl = self._known.get(key)
        if tbl:
            return tbl
        with self._gen_guard:
            lock = self._gen_locks.setdefault(key, threading.Lock())
        with lock:
            if self.is_generated(instance_id, resource):
                return self._known[key]
            tbl = self.table_name(instance_id, resource)
            self._generate(element, instance_id, resource, tbl)
            self._known[key] = tbl
            return tbl

    def _generate(self, element: ElementDef, instance_id: int, resource: str, tbl: str) -> None:
        count = 1 if resource in element.singletons else self.count_for(resource)
        started = time.monotonic()
        rows = generator.generate(
            element, resource, instance_id, self.seed, count, self.anchor_ms, self.composite_qbo_ids
        )
        with self.store.tx() as c:
            c.execute(f"DROP TABLE IF EXISTS {tbl}")
            c.execute(
                f"CREATE TABLE {tbl} (seq INTEGER PRIMARY KEY, created INTEGER NOT NULL, "
                "updated INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL, "
                "changed INTEGER)"
            )
            sql = f"INSERT INTO {tbl} (seq, created, updated, deleted, data, changed) VALUES (?, ?, ?, 0, ?, ?)"
            batch: list[tuple[int, int, int, str, int]] = []
            for seq, created, updated, rec in rows:
                batch.append((seq, created, updated, dumps(rec), updated))
                if len(batch) >= _BATCH:
                    c.executemany(sql, batch)
                    batch.clear()
            if batch:
                c.executemany(sql, batch)
            c.execute(f"CREATE INDEX {tbl}_updated ON {tbl} (updated)")
            c.execute(
                "INSERT OR REPLACE INTO datasets (instance_id, resource, tbl, generated) VALUES (?, ?, ?, ?)",
                (instance_id, resource, tbl, count),
            )
        log.info(
            "generated %s %s records for instance %s in %.1f s",
            count,
            resource,
            instance_id,
            time.monotonic() - started,
        )

    def drop_instance(self, instance_id: int) -> None:
        with self.store.tx() as c:
            for (tbl,) in c.execute("SELECT tbl FROM datasets WHERE instance_id=?", (instance_id,)).fetchall():
                c.execute(f"DROP TABLE IF EXISTS {tbl}")
            c.execute("DELETE FROM datasets WHERE instance_id=?", (instance_id,))
        for key in [k for k in self._known if k[0] == instance_id]:
            self._known.pop(key, None)

    # ------------------------------------------------------------ reads
    def get(self, tbl: str, seq: int) -> Row | None:
        row = (
            self.store.conn()
            .execute(f"SELECT seq, created, updated, deleted, data, changed FROM {tbl} WHERE seq=?", (seq,))
            .fetchone()
        )
        return Row(row[0], row[1], row[2], bool(row[3]), row[4], row[5]) if row else None

    def count(self, tbl: str, window: Window | None = None, include_deleted: bool = False) -> int:
        where, args = self._where(window, include_deleted)
        return int(self.store.conn().execute(f"SELECT COUNT(*) FROM {tbl}{where}", args).fetchone()[0])

    def max_seq(self, tbl: str) -> int:
        return int(self.store.conn().execute(f"SELECT COALESCE(MAX(seq), 0) FROM {tbl}").fetchone()[0])

    @staticmethod
    def _where(window: Window | None, include_deleted: bool) -> tuple[str, list[int]]:
        parts: list[str] = [] if include_deleted else ["deleted = 0"]
        args: list[int] = []
        if window:
            sql, wargs = window.sql()
            if sql:
                parts.append(sql)
                args.extend(wargs)
        return ((" WHERE " + " AND ".join(parts)) if parts else "", args)

    def scan(
        self,
        tbl: str,
        window: Window | None = None,
        include_deleted: bool = False,
        order: str = "seq",
        offset: int = 0,
        limit: int | None = None,
        after_seq: int | None = None,
    ) -> Iterator[Row]:
        """Stream rows in ``order`` (by ``seq`` or ``updated``, asc/desc) in constant memory.

        ``after_seq`` keeps only rows with ``seq`` greater than it (keyset paging, with ``order="seq"``).
        """
        where, args = self._where(window, include_deleted)
        if after_seq is not None:
            where = f"{where} AND seq > ?" if where else " WHERE seq > ?"
            args = [*args, after_seq]
        assert order in ("seq", "seq DESC", "updated, seq", "updated DESC, seq DESC")
        sql = f"SELECT seq, created, updated, deleted, data, changed FROM {tbl}{where} ORDER BY {order}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args = [*args, -1 if limit is None else limit, offset]
        cur = self.store.conn().cursor()
        cur.arraysize = 2000
        cur.execute(sql, args)
        while True:
            chunk = cur.fetchmany()
            if not chunk:
                return
            for row in chunk:
                yield Row(row[0], row[1], row[2], bool(row[3]), row[4], row[5])

    # ------------------------------------------------------------ writes
    def insert(self, tbl: str, seq: int, created: int, updated: int, data: str, changed: int) -> None:
        with self.store.tx() as c:
            c.execute(
                f"INSERT INTO {tbl} (seq, created, updated, deleted, data, changed) VALUES (?, ?, ?, 0, ?, ?)",
                (seq, created, updated, data, changed),
            )

    def replace(self, tbl: str, seq: int, updated: int, data: str, changed: int, deleted: bool = False) -> None:
        with self.store.tx() as c:
            c.execute(
                f"UPDATE {tbl} SET updated=?, data=?, deleted=?, changed=? WHERE seq=?",
                (updated, data, int(deleted), changed, seq),
            )
