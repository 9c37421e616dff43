"""Unified tables: one table per common resource across elements and instances.

Load extracts of common resources into one table per common resource, across elements and instances, and answer a
cross-system question from those tables (the ``cloudelements_unified_finance_sync`` example DAG, ``make demo``).

Table ``common_<resource>`` (``-`` → ``_``): primary key ``(source_element, instance_id, id)``; one column
per scalar common field (dots → ``_``: ``address.city`` → ``address_city``; ``string``/``date`` →
TEXT (dates ISO-8601 UTC), ``number`` → REAL, ``boolean`` → BOOLEAN); one JSON TEXT column per array of
the resource (``lines``); ``is_deleted`` (a tombstone of the extract, or ``active == false``) and
``deleted_at``. Each manifest is applied in one transaction (rows replaced by key, tombstones mark the
row deleted); columns a newer model version adds are added in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from airflow.sdk import ObjectStoragePath

from airflow_provider_cloudelements.common_model import CommonModel, CommonResource, finance_model
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sqlsync
from airflow_provider_cloudelements.utils.records import field_value, stable_id

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
    cols: list[sa.Column[Any]] = [
        sa.Column("source_element", sa.Text, primary_key=True),
        sa.Column("instance_id", sa.Integer, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
    ]
    cols += [sa.Column(name, kind) for name, (_, kind) in columns_of(resource).items()]
    cols += [
        sa.Column("is_deleted", sa.Boolean, nullable=False),
        sa.Column("deleted_at", sa.Text),
        sa.Column("observed_at", sa.Text),  # K = max(updated_at, snapshot_at), normalised ISO-8601 UTC
    ]
    return sa.Table(table_name(resource.name), metadata, *cols)


def _row(record: Mapping[str, Any], resource: CommonResource, element: str, instance_id: int) -> dict[str, Any]:
    row: dict[str, Any] = {"source_element": element, "instance_id": instance_id}
    row["id"] = stable_id(record[resource.id_field], element)  # QBO serves <id>|<syncToken>: one row per record
    for name, (path, kind) in columns_of(resource).items():
        value = field_value(record, path)
        if kind is sa.Text and isinstance(value, (list, dict)):
            value = json.dumps(value, sort_keys=True)
        row[name] = value
    row["is_deleted"] = False
    row["deleted_at"] = None
    return row


def _ensure(engine: sa.Engine, table: sa.Table) -> None:
    table.create(engine, checkfirst=True)
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
    with engine.begin() as conn:
        for col in table.columns:
            if col.name not in present:  # a newer model version added a field
                ddl = sa.schema.CreateColumn(col).compile(dialect=engine.dialect)
                conn.execute(sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}'))


def _lines(uri: str) -> Iterable[Any]:
    with ObjectStoragePath(uri).open("rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            obj = sqlsync.parse_json_line(line, where=f"{uri}:{lineno}")
            if obj is not None:
                yield obj


def _stored(
    conn: sa.Connection, table: sa.Table, key: Any
) -> dict[str, tuple[str | None, str | None, bool, str | None]]:
    """``{id: (observed_at, updated_at, is_deleted, deleted_at)}`` of one instance's stored rows."""
    cols = (table.c.id, table.c.observed_at, table.c.updated_at, table.c.is_deleted, table.c.deleted_at)
    return {str(r[0]): (r[1], r[2], bool(r[3]), r[4]) for r in conn.execute(sa.select(*cols).where(key))}


def load_manifests(engine: sa.Engine, manifests: Any, model: CommonModel | None = None) -> list[dict[str, Any]]:
    """Apply extract manifests of common resources to the unified tables.

    Apply extract manifests of common resources to the unified tables, one transaction per manifest, by the loader's
    ordering rule (docs/reliability.md): a live version replaces the stored one when its observed time K =
    max(updated_at, snapshot_at) is later (then the later ``updated_at``; a full tie writes nothing), beats a stored
    deletion when K is later than the deletion; a tombstone (``deleted_at`` d) wins when d >= K of the stored row and is
    kept as a row also for ids never loaded; a *complete* full refresh marks the instance's live rows it lacks deleted
    at its ``snapshot_at`` (when that is not older than the row). Reruns write nothing.

    :param engine: a SQLAlchemy engine (SQLite, PostgreSQL …).
    :param manifests: what extract operators return (a dict, or a list of them: mapped extracts).
    :param model: the model whose resources were extracted (default: the built-in finance model).
    :return: ``[{"table", "source_element", "instance_id", "upserted", "deleted"}]`` per manifest
        (rows written live / rows marked deleted by this manifest).
    :raises CloudElementsConfigError: a manifest of a resource that is not a common resource of ``model``.
    """
    model = model or finance_model()
    raw, _ = sqlsync.coerce_manifests(manifests)
    out = []
    for item in raw:
        manifest = sqlsync.loadable_manifest(item)
        resource = model.resources.get(manifest.resource)
        if resource is None:
            raise CloudElementsConfigError(
                f"Manifest resource {manifest.resource!r} is not a common resource of model {model.name!r}"
            )
        table = _table(sa.MetaData(), resource)
        _ensure(engine, table)
        spec = manifest.spec
        snapshot = manifest.snapshot_at
        key = (table.c.source_element == manifest.element_key) & (table.c.instance_id == manifest.instance_id)
        upserted = deleted = 0
        with engine.begin() as conn:
            stored = _stored(conn, table, key)
            seen: set[str] = set()
            writes: dict[str, dict[str, Any]] = {}
            for lineno, record in enumerate(_lines(manifest.path), start=1):
                staged = sqlsync.build_row(
                    record, spec, naive_tz="UTC", where=f"{manifest.path}:{lineno}", snapshot_at=snapshot
                )
                row = _row(record, resource, manifest.element_key, manifest.instance_id)
                row["is_deleted"] = bool(staged.is_deleted)
                row["observed_at"] = staged.observed_at
                seen.add(row["id"])
                have = stored.get(row["id"])
                if have is not None:
                    k_old, u_old, was_deleted, d_old = have
                    if was_deleted and d_old is not None and not (staged.observed_at or "") > d_old:
                        continue  # a later deletion stays
                    if not was_deleted and ((staged.observed_at or ""), (staged.updated_at or "")) <= (
                        (k_old or ""),
                        (u_old or ""),
                    ):
                        continue  # the stored version is as new or newer
                writes[row["id"]] = row
                stored[row["id"]] = (staged.observed_at, staged.updated_at, row["is_deleted"], None)
            default_d = sqlsync.default_deletion_time(manifest, sqlsync.normalize_timestamp(_now()) or "")
            d: str
            marks: dict[str, str] = {}
            for obj in _lines(manifest.deleted_path) if manifest.deleted_path else []:
                rid, raw_d = sqlsync.build_tombstone(obj, spec, where=str(manifest.deleted_path))
                d = (sqlsync.normalize_timestamp(raw_d) if raw_d else None) or default_d
                have = stored.get(rid)
                if have is None or (have[2] and (have[3] or "") < d) or (not have[2] and d >= (have[0] or "")):
                    marks[rid] = d
                    stored[rid] = (have[0] if have else None, have[1] if have else None, True, d)
            if manifest.complete and snapshot:
                for rid, (k_old, _u, was_deleted, _d) in list(stored.items()):
                    if rid not in seen and not was_deleted and snapshot >= (k_old or ""):
                        marks[rid] = snapshot
            if writes:
                ids = list(writes)
                for i in range(0, len(ids), 500):
                    conn.execute(table.delete().where(key & table.c.id.in_(ids[i : i + 500])))
                conn.execute(table.insert(), list(writes.values()))
            for rid, d in marks.items():
                done = conn.execute(
                    table.update().where(key & (table.c.id == rid)).values(is_deleted=True, deleted_at=d)
                )
                if not done.rowcount:  # a tombstone row for an id never loaded
                    conn.execute(
                        table.insert(),
                        [{"source_element": manifest.element_key, "instance_id": manifest.instance_id, "id": rid,
                          "is_deleted": True, "deleted_at": d}],
                    )  # fmt: skip
            upserted = sum(1 for r in writes.values() if not r["is_deleted"])
            deleted = len(marks) + sum(1 for r in writes.values() if r["is_deleted"])
        out.append(
            {
                "table": table.name,
                "source_element": manifest.element_key,
                "instance_id": manifest.instance_id,
                "upserted": upserted,
                "deleted": deleted,
            }
        )
    return out


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


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
