"""Object storage → SQL: :class:`CloudElementsSqlUpsertOperator` upserts landed Cloud Elements extracts.

The extracts (their :class:`~airflow_provider_cloudelements.models.manifest.ExtractManifest`) go into SQL
tables through a common-sql :class:`~airflow.providers.common.sql.hooks.sql.DbApiHook` (SQLite,
PostgreSQL); the load itself is :func:`~.load.load_manifest`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_cloudelements import openlineage
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as rowmod
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import (
    SqlDialect,
    dialect_for_conn_type,
    table_name,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.load import check_not_superseded, load_manifest
from airflow_provider_cloudelements.utils.validation import check_timezone, positive_int

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Context


class SqlTarget(NamedTuple):
    """A warehouse connection resolved: its common-sql hook and our dialect for it."""

    hook: DbApiHook
    dialect: SqlDialect


def get_sql_hook(conn_id: str) -> SqlTarget:
    """Resolve ``conn_id`` to its common-sql hook and our dialect for it.

    :raises CloudElementsConfigError: the connection's hook is not a ``DbApiHook``, or its type is not
        ``sqlite``/``postgres`` (for ``sqlite`` the ``apache-airflow-providers-sqlite`` package is needed).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    conn = BaseHook.get_connection(conn_id)
    dialect_for_conn_type(conn.conn_type)  # fail on an unsupported type first
    try:
        hook = conn.get_hook()
    except Exception as exc:  # Airflow raises a bare AirflowException for an unknown hook type
        raise CloudElementsConfigError(
            f"Connection {conn_id!r} (type {conn.conn_type!r}) has no usable hook: {exc}; "
            f"is the provider for {conn.conn_type!r} installed?"
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise CloudElementsConfigError(
            f"Connection {conn_id!r} resolves to {type(hook).__name__}, not a common-sql DbApiHook"
        )
    return SqlTarget(hook, dialect_for_conn_type(conn.conn_type, getattr(hook, "placeholder", None)))


def prepare_connection(conn: Any, dialect: SqlDialect) -> None:
    """Put a fresh DB-API connection in the state :func:`load_manifest` expects.

    SQLite: driver-managed implicit transactions off (we issue ``BEGIN IMMEDIATE`` ourselves) and a
    busy timeout. PostgreSQL: autocommit off (psycopg opens the transaction on the first statement).
    """
    if dialect.name == "sqlite":
        conn.isolation_level = None
    elif getattr(conn, "autocommit", False):
        conn.autocommit = False
    cur = conn.cursor()
    try:
        for statement in dialect.session_sql:
            cur.execute(statement)
    finally:
        cur.close()


class CloudElementsSqlUpsertOperator(BaseOperator):
    """Upsert landed Cloud Elements extracts into SQL tables (SQLite or PostgreSQL).

    One table per ``(element_key, resource)``, named ``<table_prefix><element_key>_<resource>``
    sanitized (``ce_quickbooks_bill_payments``), primary key ``(instance_id, record_id)``; columns
    and algorithm in :mod:`~airflow_provider_cloudelements.transfers.storage_to_sql.statements`, semantics in
    docs/reliability.md ("Semantics"). Each manifest loads in one transaction: a bad line leaves its
    table unchanged; rerunning a manifest writes nothing; manifests may be loaded in any order (an
    older version never overwrites a newer one, an old deletion never hides a newer version, a newer
    deletion is never undone by an older extract). Tombstones (``deleted_path``) and, for a
    *complete* full refresh only (``complete: true``, no failed records), ids absent from the file mark
    rows ``is_deleted = 1`` with their own ``deleted_at``; tombstones for ids the table does not hold
    are stored as tombstone rows (``data`` = ``null``).

    Manifest shape (the extract operators' XCom; v1 manifests lack the last four keys)::

        {"element_key": "quickbooks", "instance_id": 12, "resource": "invoices",
         "path": "file:///.../invoices.<token>.ndjson", "format": "ndjson", "records": 40,
         "full_refresh": False, "window": {"start": ISO | None, "end": ISO | None, "full_refresh": bool},
         "deleted_path": None | URI of {"id": ..., "deleted_at": ISO} lines,
         "failed_records": 0, "errors_path": None, ...,
         "manifest_version": 2, "snapshot_at": "2026-12-01T10:00:00.000Z", "complete": False,
         "naive_timezone": "UTC"}

    :param manifest: a manifest dict, or a list of them (e.g. the XComArg of mapped extract tasks;
        ``None`` entries are skipped). Templated.
    :param conn_id: a common-sql connection of type ``sqlite`` (needs
        ``apache-airflow-providers-sqlite``) or ``postgres``. Templated.
    :param table_prefix: table name prefix. Templated.
    :param batch_size: records per ``executemany`` (bounds memory; the file is streamed).
    :param naive_timezone: IANA zone of element times without an offset (FreshBooks ``updated``);
        ``None`` (default) = the manifest's ``naive_timezone`` (the zone its extract filtered with),
        else the element's default (``ElementSpec.naive_timezone``, UTC for every element). Set it only
        to override what the extract recorded (a warning is logged when they differ).
    :param source_timezone: deprecated alias of ``naive_timezone``.
    :param verify_record_count: fail (and load nothing) when a file's record count differs from the
        manifest's ``records``.
    :param typed: also maintain typed tables (one column per scalar field, child tables for arrays of
        objects, schema evolution; docs/typed-tables.md) in the same transaction as each raw load.
    :param history: history mode: keep every version in ``<table>__versions`` and maintain
        ``<table>__history`` (one row per version with ``valid_from``/``valid_to``, the deletion as a
        closing row; docs/typed-tables.md "History mode") in the same transaction as each raw load.
    :returns: per manifest ``{"table", "element_key", "instance_id", "resource", "inserted",
        "updated", "unchanged", "deleted", "new_tombstones", "rows_live", "rows_total"}`` (plus
        ``"typed"``: :func:`airflow_provider_cloudelements.typed.project`'s summary, with ``typed=True``):
        a dict for a dict manifest, a list of dicts (same order) for a list.
    :raises CloudElementsConfigError: bad manifest (missing key, unknown element key, non-NDJSON
        format, unknown ``naive_timezone``), bad connection or parameter — before the database is touched.
    :raises CloudElementsDataError: a bad line or record (invalid JSON, no id, an unparseable time,
        nesting too deep), naming the file and line; that manifest's table is unchanged (earlier
        manifests of a list stay committed, later ones are not loaded).
    :raises CloudElementsReconciliationError: a file's record count disagrees with its manifest.
    """

    template_fields: Sequence[str] = ("manifest", "conn_id", "table_prefix")
    ui_color = "#d9f0e3"

    def __init__(
        self,
        *,
        manifest: Any,
        conn_id: str = "sqlite_default",
        table_prefix: str = "ce_",
        batch_size: int = 1000,
        naive_timezone: str | None = None,
        verify_record_count: bool = True,
        source_timezone: str | None = None,
        typed: bool = False,
        history: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        positive_int(batch_size, "batch_size")
        if source_timezone is not None:
            warnings.warn("source_timezone is deprecated; use naive_timezone", DeprecationWarning, stacklevel=2)
            if naive_timezone is not None and naive_timezone != source_timezone:
                raise CloudElementsConfigError("Give naive_timezone only (source_timezone is its deprecated alias)")
            naive_timezone = source_timezone
        if naive_timezone is not None:
            check_timezone(naive_timezone, "naive_timezone")
        self.manifest = manifest
        self.conn_id = conn_id
        self.table_prefix = table_prefix
        self.batch_size = batch_size
        self.naive_timezone = naive_timezone
        self.verify_record_count = verify_record_count
        self.typed = bool(typed)
        self.history = bool(history)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        raw, single = rowmod.coerce_manifests(self.manifest)
        manifests = [rowmod.loadable_manifest(item) for item in raw]
        for m in manifests:
            check_not_superseded(m)
        for m in manifests:  # fail on a bad prefix before touching the database
            table_name(self.table_prefix, m.element_key, m.resource)
        if not manifests:
            self.log.info("No manifest to load")
            return []
        hook, dialect = get_sql_hook(self.conn_id)
        summaries: list[dict[str, Any]] = []
        conn = hook.get_conn()
        try:
            prepare_connection(conn, dialect)
            for m in manifests:
                summaries.append(
                    load_manifest(
                        conn,
                        dialect,
                        m,
                        table_prefix=self.table_prefix,
                        batch_size=self.batch_size,
                        naive_timezone=self.naive_timezone,
                        verify_record_count=self.verify_record_count,
                        typed=self.typed,
                        history=self.history,
                    )
                )
        finally:
            conn.close()
        self._loaded = ([m.to_xcom() for m in manifests], summaries)  # for get_openlineage_facets_on_complete
        return summaries[0] if single else summaries

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return the OpenLineage facets: the landed files of each manifest -> its table (``openlineage``)."""
        raw, summaries = getattr(self, "_loaded", ([], []))
        return openlineage.load_lineage(raw, summaries, self.conn_id)
