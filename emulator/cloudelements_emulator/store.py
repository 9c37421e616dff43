"""SQLite storage: one database file under ``data_dir`` (stdlib ``sqlite3``, WAL mode).

Tables:

* ``meta(key, value)`` — counters.
* ``instances(id, token, deleted, data)`` — instance JSON.
* ``datasets(instance_id, resource, tbl, generated)`` — which record tables exist.
* one record table per (instance, resource): ``seq INTEGER PRIMARY KEY`` (id order), ``created``,
  ``updated`` (epoch ms, indexed), ``deleted`` (1 = hard-deleted tombstone), ``data`` (the JSON text
  exactly as served).
* ``events``, ``deliveries``, ``bulk_jobs``, ``bulk_errors`` — owned by their services.

Each thread gets its own connection; writes are serialised with :attr:`Store.write_lock`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS instances (id INTEGER PRIMARY KEY, token TEXT UNIQUE,
                                      deleted INTEGER NOT NULL DEFAULT 0,
                                      data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (instance_id INTEGER, resource TEXT, tbl TEXT, generated INTEGER,
                                     PRIMARY KEY (instance_id, resource));
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id INTEGER, date_ms INTEGER,
                                   status TEXT, data TEXT);
CREATE INDEX IF NOT EXISTS events_instance ON events (instance_id, id);
CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, status TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS bulk_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id INTEGER, data TEXT);
CREATE TABLE IF NOT EXISTS bulk_errors (job_id INTEGER, seq INTEGER, data TEXT, PRIMARY KEY (job_id, seq));
"""


class Store:
    """Connection factory + schema for one database file."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "emulator.sqlite3")
        self.write_lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.conn().executescript(_SCHEMA)

    def conn(self) -> sqlite3.Connection:
        """Return the calling thread's connection (autocommit; use :meth:`tx` for transactions)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA cache_size=-4000")  # 4 MB per connection
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding :attr:`write_lock`."""
        with self.write_lock:
            c = self.conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def next_counter(self, name: str, start: int) -> int:
        """Persistent monotonically increasing counter (first value ``start``)."""
        with self.tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key=?", (name,)).fetchone()
            value = int(row[0]) + 1 if row else start
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (name, str(value)))
        return value

    def release(self) -> None:
        """Close this thread's connection (short-lived worker threads call this when done)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            return
        self._local.conn = None
        with self._all_lock:
            if c in self._all:
                self._all.remove(c)
        c.close()

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:  # pragma: no cover - best effort
                    log.debug("closing a connection failed", exc_info=True)
            self._all.clear()
        self._local = threading.local()
