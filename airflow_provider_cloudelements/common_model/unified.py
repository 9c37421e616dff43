"""Unified tables: one table per common resource across elements and instances.

Load extracts of common resources into one table per common resource, across elements and instances, and answer a
cross-system question from those tables (the ``cloudelements_unified_finance_sync`` example DAG, ``make demo``).

Table ``common_<resource>`` (``-`` → ``_``): primary key ``(source_element, instance_id, id)``; one column
per scalar common field (dots → ``_``: ``address.city`` → ``address_city``; ``string``/``date`` →
TEXT (dates ISO-8601 UTC), ``number`` → REAL, ``boolean`` → BOOLEAN); one JSON TEXT column per array of
the resource (``lines``); ``is_deleted`` (a tombstone of the extract, or ``active == false``) and
``deleted_at``; ``observed_at`` and ``synced_at`` of the raw row it projects. The unified tables are a projection
of the SQL loader's raw tables (``<prefix><element>_<resource>``, :func:`load_manifests`, :mod:`.unified_load`):
one ordering rule for both, each manifest in one transaction for both; columns a newer model version adds are
added in place.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from airflow_provider_cloudelements.common_model import CommonModel, CommonResource, finance_model
from airflow_provider_cloudelements.common_model.unified_load import UnifiedProjection, load_and_project
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sqlsync
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import dialect_for_conn_type
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import table_name as raw_table_name
from airflow_provider_cloudelements.transfers.storage_to_sql.load import check_not_superseded
from airflow_provider_cloudelements.utils.records import field_value

log = logging.getLogger(__name__)

_SQL_TYPES: dict[str, Any] = {"string": sa.Text, "date": sa.Text, "number": sa.Float, "boolean": sa.Boolean}


def table_name(resource: str) -> str:
    """``common-invoices`` → ``common_invoices``."""
    return resource.replace("-", "_")


def columns_of(resource: CommonResource) -> dict[str, tuple[str, Any]]:
    """``{column: (field path or array root, SQL type)}`` of a common resource's table (key columns excluded)."""
    out: dict[str, tuple[str, Any]] = {}
    for f in resource.fields:
        if "[" in f.path:
            root = f.path.split("[", 1)[0]
            out.setdefault(root.replace(".", "_"), (root, sa.Text))
        elif f.path != resource.id_field:
            out[f.path.replace(".", "_")] = (f.path, _SQL_TYPES[f.type])
    return out


def _table(metadata: sa.MetaData, resource: CommonResource) -> sa.Table:
    # PostgreSQL: ids in the raw loader's collation ("C"), so the projection's joins on them use the indexes
    key_text = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    cols: list[sa.Column[Any]] = [
        sa.Column("source_element", sa.Text, primary_key=True),
        sa.Column("instance_id", sa.Integer, primary_key=True),
        sa.Column("id", key_text, primary_key=True),
    ]
    cols += [sa.Column(name, kind) for name, (_, kind) in columns_of(resource).items()]
    cols += [
        sa.Column("is_deleted", sa.Boolean, nullable=False),
        sa.Column("deleted_at", sa.Text),
        sa.Column("observed_at", sa.Text),  # K = max(updated_at, snapshot_at), normalised ISO-8601 UTC
        sa.Column("synced_at", sa.Text),  # synced_at of the raw row this row projects
    ]
    return sa.Table(table_name(resource.name), metadata, *cols)


def _values(record: Mapping[str, Any] | None, *, resource: CommonResource) -> dict[str, Any]:
    """The common columns of one record (all ``None`` for a tombstone row: an id deleted before it was loaded)."""
    row: dict[str, Any] = {}
    for name, (path, kind) in columns_of(resource).items():
        value = None if record is None else field_value(record, path)
        if kind is sa.Text and isinstance(value, (list, dict)):
            value = json.dumps(value, sort_keys=True)
        row[name] = value
    return row


def _ensure(engine: sa.Engine, table: sa.Table) -> None:
    table.create(engine, checkfirst=True)
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    with engine.begin() as conn:
        for col in table.columns:
            if col.name not in present:  # a newer model version added a field
                ddl = sa.schema.CreateColumn(col).compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}'))


def load_manifests(
    engine: sa.Engine, manifests: Any, model: CommonModel | None = None, *, table_prefix: str = "ce_"
) -> list[dict[str, Any]]:
    """Load extract manifests of common resources, and their unified tables, by the loader's rules.

    Each manifest is loaded by the SQL loader (``storage_to_sql.load.load_manifest``, through
    :func:`~.unified_load.load_and_project`) into its raw table ``<table_prefix><element>_<resource>``
    (``ce_freshbooksv2_common_invoices``), which applies every ordering rule of docs/reliability.md ("Semantics"):
    versions, deletions, tombstones, deletion by absence from a complete full refresh, the latest complete
    snapshot, whole-second times. In the same transaction the rows of ``common_<resource>`` of the manifest's
    ``(source_element, instance_id)`` whose raw row changed (or that are missing) are rewritten from the raw table
    (:mod:`.unified_load`). Manifests may be loaded in any order and reloaded: the tables do not depend on the
    order, and a rerun writes nothing.

    :param engine: a SQLAlchemy engine on SQLite or PostgreSQL.
    :param manifests: what extract operators return (a dict, or a list of them: mapped extracts).
    :param model: the model whose resources were extracted (default: the built-in finance model).
    :param table_prefix: prefix of the raw tables (as ``CloudElementsSqlUpsertOperator``'s).
    :return: ``[{"table", "source_element", "instance_id", "upserted", "deleted"}]`` per manifest: unified rows
        live after the load that are new or changed, and rows that became deleted (tombstone rows included).
    :raises CloudElementsConfigError: a manifest of a resource that is not a common resource of ``model``, or an
        engine other than SQLite or PostgreSQL (before any load).
    :raises CloudElementsDataError: a bad manifest, or one replaced by a later run of its interval (before any
        load); a bad line or record, or unified rows its raw table does not hold (that manifest loads nothing;
        earlier manifests of the list stay committed).
    :raises CloudElementsReconciliationError: a file's record count disagrees with its manifest (nothing loaded).
    """
    model = model or finance_model()
    items = [sqlsync.loadable_manifest(item) for item in sqlsync.coerce_manifests(manifests).manifests]
    plan: list[tuple[ExtractManifest, CommonResource, str]] = []
    for manifest in items:
        resource = model.resources.get(manifest.resource)
        if resource is None:
            raise CloudElementsConfigError(
                f"Manifest resource {manifest.resource!r} is not a common resource of model {model.name!r}"
            )
        raw_table = raw_table_name(table_prefix, manifest.element_key, manifest.resource)  # a bad prefix fails here
        check_not_superseded(manifest)
        plan.append((manifest, resource, raw_table))
    if not plan:
        return []
    dialect = dialect_for_conn_type(engine.dialect.name)
    out = []
    for manifest, resource, raw_table in plan:
        table = _table(sa.MetaData(), resource)
        _ensure(engine, table)
        projection = UnifiedProjection(
            dialect,
            raw=raw_table,
            unified=table.name,
            columns=list(columns_of(resource)),
            element=manifest.element_key,
            instance_id=manifest.instance_id,
            build=functools.partial(_values, resource=resource),
        )
        raw = load_and_project(engine, dialect, manifest, projection, table_prefix=table_prefix)
        log.info(
            "Projected %s (inserted=%s updated=%s deleted=%s) onto %s: upserted=%s deleted=%s",
            raw["table"],
            raw["inserted"],
            raw["updated"],
            raw["deleted"],
            table.name,
            projection.upserted,
            projection.deleted,
        )
        out.append(
            {
                "table": table.name,
                "source_element": manifest.element_key,
                "instance_id": manifest.instance_id,
                "upserted": projection.upserted,
                "deleted": projection.deleted,
            }
        )
    return out


OPEN_RECEIVABLES_SQL = """
select source_element, instance_id, customer_id, round(sum(balance), 2) as open_balance, count(*) as invoices
from common_invoices
where is_deleted = 0 and status = 'OPEN'
group by source_element, instance_id, customer_id
order by source_element, instance_id, customer_id
"""


def open_receivables(engine: sa.Engine) -> list[tuple[str, int, str, float, int]]:
    """Return open receivables per customer across every system.

    Open receivables per customer across every system: ``(source_element, instance_id, customer_id, open balance, open
    invoices)`` from ``common_invoices`` (status ``OPEN``, not deleted).
    """
    with engine.connect() as conn:
        return [
            (str(r[0]), int(r[1]), str(r[2]), float(r[3]), int(r[4]))
            for r in conn.execute(sa.text(OPEN_RECEIVABLES_SQL))
        ]


def invoice_truth(element: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Compute the finance model's main invoice fields straight from a raw vendor invoice.

    The finance model's main ``common-invoices`` fields computed straight from a raw vendor invoice by the rules of
    docs/common-model.md (independent of the transformation engine: the ground truth the tests and ``make demo`` compare
    with): ``id``, ``customer_id``, ``total_amount``, ``balance``, ``status`` (``OPEN``/``PAID``/``DRAFT``), ``active``,
    ``lines`` (line amounts).
    """
    if element == "quickbooks":
        balance = float(raw["balance"])
        return {
            "id": str(raw["id"]).split("|", 1)[0],
            "customer_id": raw["customerRef"]["value"],
            "total_amount": raw["totalAmt"],
            "balance": raw["balance"],
            "status": "PAID" if balance == 0 else "OPEN",
            "active": True,
            "lines": [ln["amount"] for ln in raw["line"]],
        }
    if element == "quickbooksonprem":
        total = float(raw["TotalAmount"])
        status = "PAID" if raw["IsPaid"] else "OPEN"
        return {
            "id": raw["TxnID"],
            "customer_id": raw["CustomerRef"]["ListID"],
            "total_amount": total,
            "balance": 0 if status == "PAID" else total,
            "status": status,
            "active": True,
            "lines": [float(ln["Amount"]) for ln in raw["InvoiceLineRet"]],
        }
    status = {"paid": "PAID", "draft": "DRAFT"}.get(str(raw.get("status")), "OPEN")
    return {
        "id": str(raw["id"]),
        "customer_id": str(raw["client_id"]),
        "total_amount": raw["amount"],
        "balance": 0 if status == "PAID" else raw["amount"],
        "status": status,
        "active": raw.get("vis_state", 0) != 1,
        "lines": [ln["amount"] for ln in raw["lines"]],
    }


def open_receivables_truth(
    element: str, instance_id: int, raw_invoices: Iterable[Mapping[str, Any]]
) -> list[tuple[str, int, str, float, int]]:
    """Compute the open-receivables answer from an element's raw invoices (the ground truth).

    The :func:`open_receivables` answer from an element's raw invoices (the emulator's ground truth), by
    :func:`invoice_truth`: live invoices with status ``OPEN``, summed ``balance`` per customer.
    """
    sums: dict[str, list[float]] = {}
    for raw in raw_invoices:
        inv = invoice_truth(element, raw)
        if inv["status"] == "OPEN" and inv["active"]:
            acc = sums.setdefault(str(inv["customer_id"]), [0.0, 0])
            acc[0] += float(inv["balance"])
            acc[1] += 1
    return [(element, instance_id, cid, round(total, 2), int(n)) for cid, (total, n) in sorted(sums.items())]


def print_receivables_report(engine: sa.Engine, truth: list[tuple[str, int, str, float, int]], top: int = 5) -> bool:
    """Print the top open balances per system from the unified table next to the truth; True if all match."""
    got = open_receivables(engine)
    want = sorted(truth)
    print("Open receivables per customer across systems (unified common_invoices vs emulator truth)")
    for element in sorted({r[0] for r in want} | {r[0] for r in got}):
        mine = sorted((r for r in got if r[0] == element), key=lambda r: -r[3])[:top]
        theirs = {(r[1], r[2]): r for r in want if r[0] == element}
        total_got = round(sum(r[3] for r in got if r[0] == element), 2)
        total_want = round(sum(r[3] for r in want if r[0] == element), 2)
        print(f"  {element:<17} total open {total_got:>12.2f} (truth {total_want:>12.2f})")
        for r in mine:
            t = theirs.get((r[1], r[2]))
            print(f"    customer {r[2]:<24} {r[3]:>10.2f} in {r[4]:>2} invoices (truth {t[3] if t else '-'})")
    return got == want
