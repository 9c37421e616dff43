"""Ids and system fields of generated and hub-written records (reference §3.5).

A builder returns the *business* fields of one record; :func:`stamp` adds the system fields (id,
version, timestamps, active flags) so hub creates/updates share the exact same conventions, and
:func:`strip_system` removes them again before a re-stamp.
"""

from __future__ import annotations

from cloudelements_emulator import timefmt
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.generator.common import _QBE_ID_BASE, Record


def record_id(element: ElementDef, seq: int, created_ms: int) -> str | int:
    """Id of the ``seq``-th record (1-based), in the element's id style.

    QBO ``"42"``, QBE ``"8000002A-1700000000"`` (8 hex digits, so string order == creation order),
    FreshBooks v2 the integer ``42``, FreshBooks Classic ``"42"``.
    """
    if element.style == "qbe":
        return f"{_QBE_ID_BASE + seq:08X}-{created_ms // 1000}"
    if element.key == "freshbooksv2":
        return seq
    return str(seq)


def seq_of(element: ElementDef, raw_id: str) -> int | None:
    """Inverse of :func:`record_id`; QBO also accepts ``<id>|<syncToken>``. ``None`` if malformed."""
    text = str(raw_id).split("|", 1)[0]
    if element.style == "qbe":
        head = text.split("-", 1)[0]
        try:
            value = int(head, 16) - _QBE_ID_BASE
        except ValueError:
            return None
        return value if value > 0 else None
    return int(text) if text.isdigit() and int(text) > 0 else None


def version_of(element: ElementDef, record: Record) -> str | None:
    """Optimistic-concurrency token: QBO ``syncToken``, QBE ``EditSequence``; FreshBooks none."""
    if element.style == "qbo":
        return record.get("syncToken")
    if element.style == "qbe":
        return record.get("EditSequence")
    return None


def stamp(
    element: ElementDef,
    resource: str,
    body: Record,
    seq: int,
    created_ms: int,
    updated_ms: int,
    version: int,
    composite: bool = False,
) -> Record:
    """Return ``body`` with the element's system fields (id first) for a record at ``version``.

    ``composite``: QuickBooks Online ids carry the sync token, ``"<id>|<syncToken>"`` (reference §3.5).
    """
    kind = element.date_kind
    created = timefmt.render(timefmt.truncate(created_ms, kind), kind)
    updated = timefmt.render(timefmt.truncate(updated_ms, kind), kind)
    rid = record_id(element, seq, created_ms)
    if element.style == "qbo":
        out: Record = {"id": f"{rid}|{version}" if composite else rid, "syncToken": str(version)}
        out.update(body)
        out["domain"] = "QBO"
        out["sparse"] = False
        out["metaData"] = {"createTime": created, "lastUpdatedTime": updated}
        if resource == "preferences":
            out["Id"], out["SyncToken"] = out["id"], out["syncToken"]
        if resource in element.list_resources:
            out.setdefault("active", True)
        return out
    if element.style == "qbe":
        out = {
            element.id_field(resource): rid,
            "TimeCreated": created,
            "TimeModified": updated,
            "EditSequence": str(updated_ms // 1000 + version),
        }
        out.update(body)
        if resource in element.list_resources:
            out.setdefault("IsActive", True)
        return out
    out = {"id": rid}
    out.update(body)
    if element.key == "freshbooks" and resource in _FB_CLASSIC_OWN_ID:
        out[_FB_CLASSIC_OWN_ID[resource]] = rid
    out["created_at"] = created
    out["updated"] = updated
    if resource in element.soft_delete:
        out.setdefault("vis_state", 0)
    return out


#: FreshBooks Classic records also carry their own id under the API's name (``client_id`` of a client, …).
_FB_CLASSIC_OWN_ID = {
    "customers": "client_id",
    "invoices": "invoice_id",
    "payments": "payment_id",
    "items": "item_id",
    "taxes": "tax_id",
    "vendors": "contractor_id",
    "hooks": "callback_id",
}


def strip_system(element: ElementDef, resource: str, record: Record) -> Record:
    """Remove the fields :func:`stamp` owns (used before re-stamping on update)."""
    owned = {
        "id",
        "syncToken",
        "domain",
        "sparse",
        "metaData",
        "ListID",
        "TxnID",
        "TimeCreated",
        "TimeModified",
        "EditSequence",
        "created_at",
        "updated",
        "Id",
        "SyncToken",
    }
    if element.key == "freshbooks" and resource in _FB_CLASSIC_OWN_ID:
        owned.add(_FB_CLASSIC_OWN_ID[resource])
    return {k: v for k, v in record.items() if k not in owned}
