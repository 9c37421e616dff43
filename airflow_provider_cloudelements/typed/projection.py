"""Typed tables as a deterministic projection of the raw table the SQL loader maintains.

The raw loader (:mod:`airflow_provider_cloudelements.transfers.storage_to_sql`) keeps one row per record in
``ce_<element>_<resource>`` (``instance_id, record_id, updated_at, is_deleted, data, synced_at`` and,
where present, ``version_num``/``deleted_at``), with every ordering, idempotency and delete guarantee.
:func:`project` turns those rows into finance-ready tables, so the guarantees carry over unchanged:

``ce_typed_<element>_<resource>`` (parent, primary key ``(instance_id, record_id)``)::

    instance_id BIGINT, record_id TEXT, version_num BIGINT (QBO syncToken / QBE EditSequence, NULL for
    FreshBooks), updated_at TEXT (ISO-8601 UTC, from the raw row), is_deleted INTEGER (0/1),
    deleted_at TEXT, synced_at TEXT (the raw row's: the projection's watermark), then one column per
    scalar field (``customer_ref__value``, ``total_amt``, ...; see :mod:`.schema` for names, :mod:`.inference`
    for types)

``ce_typed_<element>_<resource>__<array>`` (child, primary key ``(instance_id, parent_id, position)``)
    one row per item of a top-level array of objects (QBO ``line``, QBE ``InvoiceLineRet``,
    FreshBooks ``lines``), ``position`` 0-based, then one column per scalar field of the item.

What is projected: every raw row of the instance whose typed row is missing or carries another
``synced_at`` (the raw loader stamps ``synced_at`` on exactly the rows it changes). A rerun that
changed nothing projects nothing; a projection that failed (or ran in a later transaction than the
load) is caught up by the next call, since the selection compares the two tables, not load stamps.
Per projected record: the parent row is upserted (field columns the record no longer has become
NULL), its child rows are deleted and re-inserted from the record; a deleted record (``is_deleted =
1``) keeps its parent row (flagged) and loses its child rows. The raw JSON stays in the raw table
(same key), so nothing is lost.

Schema evolution, within the same transaction: a new field adds a column (``ALTER TABLE … ADD
COLUMN``), a new array adds a child table, a value that does not fit a column widens it
(``boolean < integer < number < text``); nothing is dropped. Every change is logged and recorded in
``ce_schema_history``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.models.timestamps import format_utc
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import SqlDialect, table_name
from airflow_provider_cloudelements.typed import history, statements
from airflow_provider_cloudelements.typed.flatten import Flattener, flatten
from airflow_provider_cloudelements.typed.inference import (
    NATIVE,
    Batch,
    FieldHints,
    converter,
    hints_from_metadata,
    needed_type,
    scan,
)
from airflow_provider_cloudelements.typed.schema import TableSchema, child_table_name, typed_table_name
from airflow_provider_cloudelements.typed.statements import TODO_TABLE, Engine, page_sql, resolve_engine, todo_sql
from airflow_provider_cloudelements.utils import jsonfast
from airflow_provider_cloudelements.utils.elements import get_element
from airflow_provider_cloudelements.utils.records import record_version

__all__ = ["COMPILED_FLATTENERS", "project", "resolve_engine", "typed_table_name"]

log = logging.getLogger(__name__)

#: Flatten records with a compiled function per record shape (:class:`~.flatten.Flattener`); ``False``
#: uses the generic :func:`~.flatten.flatten` (the benchmark measures both in one run).
COMPILED_FLATTENERS = True
#: Name a DuckDB Arrow batch is registered under for one statement.
_ARROW_BATCH = "ce_typed_arrow_batch"


@dataclass
class _Table:
    """A typed table during a projection: its schema plus compiled statements."""

    schema: TableSchema
    hints: Mapping[str, str]
    sql: str = ""
    order: tuple[str, ...] = ()
    key: tuple[Any, ...] = ()

    def paths_in_order(self) -> list[str]:
        by_column = {column: path for path, column in self.schema.paths.items()}
        return [by_column[column] for column in self.schema.columns]


class _Projection:
    """One call of :func:`project` (holds the cursor, schemas and counters)."""

    def __init__(
        self,
        cur: Any,
        engine: Engine,
        *,
        raw_table: str,
        parent_name: str,
        instance_id: int,
        element_key: str,
        hints: FieldHints,
        stamp: str,
    ) -> None:
        self.cur = cur
        self.engine = engine
        self.raw_table = raw_table
        self.parent_name = parent_name
        self.instance_id = instance_id
        self.hints = hints
        self.stamp = stamp
        self.spec = get_element(element_key)
        self.changes: list[dict[str, Any]] = []
        self.tables: dict[str, _Table] = {}
        self.projected = 0
        self.deleted = 0
        self.child_rows = 0
        self.flatten_record = Flattener(with_arrays=True)
        self.flatten_item: dict[str, Flattener] = {}

    # ---- schema ---------------------------------------------------------------------------------

    def _hints_for(self, array_path: str) -> dict[str, str]:
        return {path: logical for (arr, path), logical in self.hints.types.items() if arr == array_path}

    def load_schemas(self) -> None:
        self.cur.execute(history.history_select_sql(self.engine), (self.parent_name, self.parent_name))
        schemas = history.schemas_from_history(self.parent_name, self.cur.fetchall())
        schemas.setdefault("", TableSchema(name=self.parent_name))
        for array_path, schema in schemas.items():
            self.tables[array_path] = _Table(schema, self._hints_for(array_path))
        parent = self.tables[""]
        if not parent.schema.exists:
            self._create(parent)

    def _record(
        self, table: _Table, change: str, column: str | None, path: str | None, old: str | None, new: str | None
    ) -> None:
        schema = table.schema
        row = (
            schema.name,
            self.parent_name if schema.array_path else None,
            schema.array_path,
            column,
            path,
            change,
            old,
            new,
            self.stamp,
        )
        self.cur.execute(history.history_insert_sql(self.engine), row)
        self.changes.append(dict(zip(history.HISTORY_COLUMNS, row, strict=True)))
        log.info(
            "Typed schema change on %s: %s %s%s",
            schema.name,
            change,
            column or "",
            f" ({old} -> {new})" if old else (f" {new}" if new else ""),
        )

    def _create(self, table: _Table) -> None:
        self.cur.execute(statements.create_table_sql(self.engine, table.schema))
        table.schema.exists = True
        self._record(table, "create_table", None, None, None, None)
        for path, column in table.schema.paths.items():
            self._record(table, "add_column", column, path, None, table.schema.columns[column])

    def child(self, array_path: str) -> _Table:
        table = self.tables.get(array_path)
        if table is None:
            name = child_table_name(self.parent_name, array_path)
            table = _Table(TableSchema(name=name, array_path=array_path), self._hints_for(array_path))
            self.tables[array_path] = table
        return table

    def evolve(self, table: _Table, batch: Batch) -> dict[int, Callable[[Any], Any]]:
        """Add/widen columns for what ``batch`` saw; returns ``{field index: converter}`` for its rows."""
        schema = table.schema
        new_columns: list[tuple[str, str, str]] = []
        for path, kinds in batch.seen.items():
            column = schema.paths.get(path)
            current = schema.columns[column] if column is not None else table.hints.get(path)
            needed = needed_type(current, kinds, path in batch.forced_text)
            if column is None:
                column = schema.allocate(path)
                schema.paths[path] = column
                schema.columns[column] = needed
                new_columns.append((column, path, needed))
            elif needed != current:
                assert current is not None
                for statement in statements.widen_column_sql(self.engine, schema.name, column, current, needed):
                    self.cur.execute(statement)
                schema.columns[column] = needed
                self._record(table, "widen", column, path, current, needed)
        if not schema.exists:
            self._create(table)
        else:
            for column, path, logical in new_columns:
                self.cur.execute(statements.add_column_sql(self.engine, schema.name, column, logical))
                self._record(table, "add_column", column, path, None, logical)
        key = tuple(schema.columns.items())
        if key != table.key:
            table.sql, table.order = statements.upsert_sql(self.engine, schema)
            expected = (*schema.system_columns, *schema.columns)
            if table.order != expected:  # pragma: no cover - SQLAlchemy renders VALUES in table order
                raise AssertionError(f"unexpected parameter order {table.order}")
            table.key = key
        converters: dict[int, Callable[[Any], Any]] = {}
        for index, path in enumerate(table.paths_in_order()):
            batch_kinds = batch.seen.get(path)
            logical = schema.columns[schema.paths[path]]
            if batch_kinds and not batch_kinds <= NATIVE[logical]:
                converters[index] = converter(logical, self.engine.decimal_numbers)
        return converters

    # ---- rows -----------------------------------------------------------------------------------

    def page(self, rows: Sequence[Sequence[Any]]) -> None:
        parent = self.tables[""]
        parent_batch = Batch()
        child_batches: dict[str, Batch] = {}
        parents: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        children: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
        replace: list[tuple[int, str]] = []
        iid = self.instance_id
        for rid, is_deleted, updated_at, synced_at, data, version, deleted_at, existing in rows:
            record = _parse(data)
            arrays: dict[str, list[dict[str, Any]]] = {}
            if COMPILED_FLATTENERS:
                flat, shape = self.flatten_record(record, arrays)
            else:
                flat, shape = flatten(record, arrays=arrays), None
            deleted = int(is_deleted or 0)
            if version is None and isinstance(record, Mapping):  # raw tables of the old loader: no version_num
                version = record_version(record, self.spec)
            parents.append(((iid, rid, version, updated_at, deleted, deleted_at, synced_at), flat))
            scan(parent_batch, parent, flat, shape)
            if existing:
                replace.append((iid, rid))
            if deleted:
                self.deleted += 1
                continue
            for array_path, items in arrays.items():
                table = self.child(array_path)
                batch = child_batches.setdefault(array_path, Batch())
                out = children.setdefault(array_path, [])
                flatten_item = self.flatten_item.get(array_path)
                if flatten_item is None:
                    flatten_item = self.flatten_item[array_path] = Flattener(with_arrays=False)
                for position, item in enumerate(items):
                    if COMPILED_FLATTENERS:
                        item_flat, item_shape = flatten_item(item)
                    else:
                        item_flat, item_shape = flatten(item), None
                    scan(batch, table, item_flat, item_shape)
                    out.append(((iid, rid, position), item_flat))
        self.projected += len(parents)

        self._write(parent, parent_batch, parents)
        if replace:
            self._delete_children(replace)
        for array_path, child_rows in children.items():
            self.child_rows += len(child_rows)
            self._write(self.tables[array_path], child_batches[array_path], child_rows)

    def _delete_children(self, keys: list[tuple[int, str]]) -> None:
        tables = [t.schema.name for t in self.tables.values() if t.schema.array_path and t.schema.exists]
        if self.engine.name != "duckdb":
            for name in tables:
                self.cur.executemany(statements.delete_children_sql(self.engine, name), keys)
            return
        import pyarrow as pa

        batch = pa.table([pa.array([rid for _, rid in keys], type=pa.string())], names=["parent_id"])
        self.cur.register(_ARROW_BATCH, batch)
        try:
            for name in tables:
                self.cur.execute(
                    f"DELETE FROM {self.engine.quote(name)} WHERE instance_id = ? "
                    f"AND parent_id IN (SELECT parent_id FROM {_ARROW_BATCH})",
                    (self.instance_id,),
                )
        finally:
            self.cur.unregister(_ARROW_BATCH)

    def _write(self, table: _Table, batch: Batch, rows: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        converters = self.evolve(table, batch)
        paths = table.paths_in_order()
        params: list[tuple[Any, ...]] = []
        if converters:
            for system, flat in rows:
                values = list(map(flat.get, paths))
                for index, convert in converters.items():
                    if values[index] is not None:
                        values[index] = convert(values[index])
                params.append((*system, *values))
        else:
            params = [(*system, *map(flat.get, paths)) for system, flat in rows]
        if not params:
            return
        if self.engine.name != "duckdb":
            self.cur.executemany(table.sql, params)
            return
        # DuckDB runs executemany row by row (a few hundred rows/s); an Arrow batch is one vectorised insert
        import pyarrow as pa

        types = statements.arrow_types(table.schema)
        batch = pa.table(
            [pa.array(column, type=kind) for column, kind in zip(zip(*params, strict=True), types, strict=True)],
            names=list(table.order),
        )
        sql, _ = statements.upsert_sql(self.engine, table.schema, source=_ARROW_BATCH)
        self.cur.register(_ARROW_BATCH, batch)
        try:
            self.cur.execute(sql)
        finally:
            self.cur.unregister(_ARROW_BATCH)


def _parse(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        value = jsonfast.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _cursor(conn: Any, engine: Engine) -> Any:
    # a DuckDB "cursor" is a second connection with its own transaction: use the connection itself
    return getattr(conn, "raw", conn) if engine.name == "duckdb" else conn.cursor()


def _raw_columns(cur: Any, engine: Engine, raw_table: str) -> set[str]:
    cur.execute(f"SELECT * FROM {engine.quote(raw_table)} WHERE 1 = 0")
    names = {str(d[0]).lower() for d in cur.description or ()}
    cur.fetchall()
    return names


def _table_exists(cur: Any, engine: Engine, name: str) -> bool:
    p = engine.placeholder
    if engine.name == "sqlite":
        cur.execute(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = {p}", (name,))
    else:
        cur.execute(
            f"SELECT 1 FROM information_schema.tables WHERE table_name = {p} AND table_schema = current_schema()",
            (name,),
        )
    return bool(cur.fetchall())


def project(
    conn: Any,
    dialect: Engine | SqlDialect | str,
    *,
    element_key: str,
    resource: str,
    instance_id: int,
    table_prefix: str = "ce_",
    metadata: Mapping[str, Any] | None = None,
    batch_size: int = 5000,
    manage_transaction: bool = True,
) -> dict[str, Any]:
    """Bring the typed tables of ``(element_key, resource, instance_id)`` up to date with the raw table.

    :param conn: an open DB-API connection (sqlite3, psycopg/psycopg2), or a ``duckdb`` connection
        (plain or wrapped in :class:`~.duck.DuckDBConnection`).
        SQLite connections are switched to ``isolation_level = None`` (we issue ``BEGIN IMMEDIATE``),
        as :func:`airflow_provider_cloudelements.transfers.storage_to_sql.operator.prepare_connection` does.
    :param dialect: ``"sqlite"``, ``"postgres"``, ``"duckdb"``, the loader's :class:`SqlDialect` or an
        :class:`~.schema.Engine`.
    :param element_key: element key (``quickbooks``, ``quickbooksonprem``, ``freshbooksv2``, ``freshbooks``).
    :param resource: Finance-hub resource (``invoices``); the raw table is
        ``sqlsync.table_name(table_prefix, element_key, resource)``.
    :param instance_id: element instance id whose rows are projected.
    :param table_prefix: the raw loader's prefix; typed tables are named ``<prefix>typed_<element>_<resource>``.
    :param metadata: the body of ``GET /hubs/finance/objects/{resource}/metadata`` (optional): declared
        ``number``/``integer``/``boolean`` types (see :func:`~.schema.hints_from_metadata`).
    :param batch_size: raw rows per page (memory bound: one page of records and their lines).
    :param manage_transaction: ``True``: run in our own transaction (begin, per-table lock, commit; roll
        back on any error). ``False``: run inside the caller's open transaction (e.g. the raw load's, so
        both commit together) and leave commit/rollback to the caller.
    :returns: ``{"table", "child_tables" ({array path: table}), "projected" (parent rows written),
        "deleted" (of which deleted records), "child_rows" (written), "schema_changes" (list of
        ``ce_schema_history`` rows added)}``.
    :raises CloudElementsConfigError: unknown element key or engine, or the raw table does not exist.
    :raises Exception: any database error, after rolling back (``manage_transaction=True``).
    """
    engine = resolve_engine(dialect)
    get_element(element_key)  # CloudElementsConfigError for an unknown key, before the database is touched
    raw = table_name(table_prefix, element_key, resource)
    typed = typed_table_name(table_prefix, element_key, resource)
    hints = hints_from_metadata(metadata)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CloudElementsConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if manage_transaction and engine.name == "sqlite" and getattr(conn, "isolation_level", None) is not None:
        if conn.in_transaction:
            raise CloudElementsConfigError(
                "The SQLite connection has an open transaction: commit it first, or pass "
                "manage_transaction=False to project inside it"
            )
        conn.isolation_level = None
    if engine.name == "duckdb":
        conn = getattr(conn, "raw", conn)
    cur = _cursor(conn, engine)
    try:
        if manage_transaction and engine.begin_sql:
            cur.execute(engine.begin_sql)
        if manage_transaction and engine.lock_sql:
            cur.execute(engine.lock_sql, (typed,))
        if not _table_exists(cur, engine, raw):
            raise CloudElementsConfigError(f"Raw table {raw} does not exist: load the resource before projecting it")
        if not _table_exists(cur, engine, history.HISTORY_TABLE):
            if engine.lock_sql:  # concurrent first projections of different tables: one creates it
                cur.execute(engine.lock_sql, (history.HISTORY_TABLE,))
            cur.execute(history.history_ddl(engine))
        job = _Projection(
            cur,
            engine,
            raw_table=raw,
            parent_name=typed,
            instance_id=int(instance_id),
            element_key=element_key,
            hints=hints,
            stamp=format_utc(datetime.now(timezone.utc)),
        )
        job.load_schemas()
        select = page_sql(engine, raw, _raw_columns(cur, engine, raw))
        todo = todo_sql(engine, raw, typed)
        for statement in todo[:-1]:
            cur.execute(statement)
        cur.execute(todo[-1], (int(instance_id),))
        if engine.name == "postgres":
            cur.execute(f"ANALYZE {TODO_TABLE}")  # a temp table has no statistics: let the planner see its size
        last = ""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a page is many acyclic dicts: generational GC passes would cost ~2x (restored below)
        try:
            while True:
                cur.execute(select, (int(instance_id), last, batch_size))
                rows = cur.fetchall()
                if not rows:
                    break
                job.page(rows)
                last = rows[-1][0]
                if len(rows) < batch_size:
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
        cur.execute(f"DROP TABLE IF EXISTS {TODO_TABLE}")
        if manage_transaction:
            conn.commit()
    except BaseException:
        if manage_transaction:
            try:
                conn.rollback()
            except Exception:  # the original error matters more than a failed rollback
                log.exception("Rollback of the typed projection into %s failed", typed)
        raise
    finally:
        if cur is not conn:
            cur.close()
    summary = {
        "table": typed,
        "child_tables": {path: t.schema.name for path, t in job.tables.items() if path and t.schema.exists},
        "projected": job.projected,
        "deleted": job.deleted,
        "child_rows": job.child_rows,
        "schema_changes": job.changes,
    }
    log.info(
        "Projected %s row(s) of %s (instance %s) into %s: %s deleted, %s child row(s), %s schema change(s)",
        job.projected,
        raw,
        instance_id,
        typed,
        job.deleted,
        job.child_rows,
        len(job.changes),
    )
    return summary
