"""Finance-hub record reads (reference §3): resolution, CEQL, list/search paging and get by id.

* ``GET /hubs/finance/{resource}`` (:meth:`HubQuery.search`): CEQL ``where`` with the per-element rules
  (date fields compare as instants, QuickBooks Online rejects ``OR`` and compares ids / references on
  their bare value, FreshBooks provider filters such as ``updated_from``; §3.4), ``orderBy``, ``page`` /
  ``pageSize`` capped per element with ``Elements-Error``, ``nextPage`` cursors and the
  ``Elements-Returned-Count`` / ``Elements-Next-Page-Token`` / ``Elements-Total-Count`` headers (§3.3).
* ``GET /hubs/finance/{resource}/{id}`` (:meth:`HubQuery.get`): 404 for an unknown id, 400 for an id
  QuickBooks Online cannot parse (§3.5).
* A path segment names an element resource (aliases such as QBO ``vendor``) or a common resource, which
  is served from its transformation's ``vendorName`` resource and rendered through the transformation
  (§10.3, §10.4).

The base of :class:`.hubservice.HubService`, which adds the writes and activity.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from cloudelements_emulator import generator, timefmt
from cloudelements_emulator.ceql import CeqlError, Query, compile_where, date_window, lookup
from cloudelements_emulator.commonresources import CommonResources, translate_order, translate_where
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.instances import InstanceService
from cloudelements_emulator.paging import Page, _sort_key, decode_cursor, encode_cursor, parse_order_by
from cloudelements_emulator.qbo_ids import _bare_qbo_id_literals, bare_id
from cloudelements_emulator.records import RecordRepo, Row, Window, dumps
from cloudelements_emulator.transform import Mapping
from cloudelements_emulator.typing_rules import qbo_check_queryable

_QBO_OR_PROVIDER = (
    'QueryParserError: Encountered " <OR> "OR "" at line 1. Was expecting one of: <EOF> '
    '"AND" "ORDER" "ORDERBY" "MAXRESULTS" "STARTPOSITION"'
)
#: FreshBooks provider filters (reference §3.4: ``updated_from='2016-05-15'``).
_FB_FILTERS: dict[str, tuple[str, type]] = {
    "updated_from": ("updated", exp.GTE),
    "updated_to": ("updated", exp.LTE),
    "date_from": ("date", exp.GTE),
    "date_to": ("date", exp.LTE),
}


class HubQuery:
    """Record reads against the datasets of instances."""

    def __init__(self, records: RecordRepo, instances: InstanceService, seed: int) -> None:
        self.records = records
        self.instances = instances
        self.seed = seed
        self.transforms = CommonResources(instances)
        self._templates: dict[tuple[str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------ helpers
    def resolve(self, inst: dict[str, Any], resource: str) -> str:
        """The canonical resource name of a path segment (QBO ``vendor`` → ``vendors``, reference §9)."""
        return self.instances.element_of(inst).resolve(resource)

    def template(self, element: ElementDef, resource: str) -> dict[str, Any]:
        """A seeded-style record of ``resource`` with every field name the element's records use.

        Each field has its JSON type; the template is the union over a dozen generated records, so
        optional fields are included.
        """
        key = (element.key, resource)
        found = self._templates.get(key)
        if found is None:
            build = generator.builder_for(element, resource)
            rng, pools, now = random.Random(0), generator.pools(self.seed), timefmt.now_ms()
            found = {}
            for seq in range(1, 13):  # union of several records: optional fields appear in some only
                for k, v in build(rng, pools, seq, now, 12).items():
                    found.setdefault(k, v)
            found = self._templates[key] = generator.stamp(element, resource, found, 1, 0, 0, 0)
        return found

    def target(self, inst: dict[str, Any], resource: str) -> tuple[str, Mapping | None]:
        """Return ``(element resource, transformation or None)`` of a path segment.

        ``(element resource, transformation or None)`` of a path segment: a common resource name (reference §10.4) is
        served from its transformation's ``vendorName`` resource.
        """
        mapping = self.transforms.effective(inst, self.resolve(inst, resource))
        if mapping is not None and not mapping.overlay:
            return mapping.resource, mapping
        return resource, mapping

    def render(self, inst: dict[str, Any], resource: str, record: dict[str, Any]) -> dict[str, Any]:
        """A record as the hub answers it (the effective transformation applied, reference §10.3)."""
        mapping = self.transforms.effective(inst, self.resolve(inst, resource))
        return record if mapping is None else mapping.to_common(record)

    def render_text(self, inst: dict[str, Any], resource: str, text: str) -> str:
        """JSON text of one record or an array of records, with transformations applied (fast path: none)."""
        mapping = self.transforms.effective(inst, self.resolve(inst, resource))
        if mapping is None:
            return text
        data = json.loads(text)
        if isinstance(data, list):
            return dumps([mapping.to_common(r) for r in data])
        return dumps(mapping.to_common(data))

    def table(self, inst: dict[str, Any], resource: str) -> tuple[ElementDef, str]:
        """:raises CEError: 404 when the element has no such resource (reference §3.2)."""
        element = self.instances.element_of(inst)
        resource = element.resolve(resource)
        if resource not in element.resources:
            raise CEError(
                404,
                f"No resource '{resource}' for element '{element.key}'. Supported: {', '.join(element.resources)}",
            )
        return element, self.records.ensure(element, inst["id"], resource)

    @staticmethod
    def compile(element: ElementDef, where: str | None) -> Query:
        """CEQL for ``element``: date fields compare as instants; QBO rejects OR (reference §3.4)."""
        or_error = CeqlError(
            "Error parsing query: OR is not supported by QuickBooks Online queries",
            provider_message=_QBO_OR_PROVIDER,
        )
        if element.style == "qbo" and where and "|" in where:
            where = _bare_qbo_id_literals(where)
        try:
            return compile_where(
                where,
                frozenset({element.date_field, element.created_field}),
                allow_or=element.supports_or,
                or_error=or_error,
                aliases=_FB_FILTERS if element.style == "fb" else None,
            )
        except CeqlError as err:
            raise CEError(400, str(err), provider_message=err.provider_message) from None

    def predicate(self, element: ElementDef, query: Query) -> Callable[[dict], bool]:
        """The CEQL predicate with QuickBooks Online's id/reference rules (reference §3.4, §3.5).

        ``id`` compares on the part before ``|`` (``id = '22'`` finds ``22|3``) and a bare reference
        field compares its ``value`` (``customerRef = '3'``).
        """
        if element.style != "qbo":
            return query.predicate
        refs = [f for f in query.fields if f.endswith("Ref") and "." not in f]
        strip_id = self.records.composite_qbo_ids and "id" in query.fields
        if not refs and not strip_id:
            return query.predicate

        def normalised(obj: dict) -> bool:
            view = dict(obj)
            if strip_id:
                view["id"] = bare_id(obj.get("id"))
            for ref in refs:
                if isinstance(obj.get(ref), dict):
                    view[ref] = obj[ref].get("value")
            return query.predicate(view)

        return normalised

    def _row(self, element: ElementDef, tbl: str, resource: str, raw_id: str) -> Row:
        seq = generator.seq_of(element, raw_id)
        if seq is None:
            if element.style == "qbo":
                raise CEError(400, f"id is invalid: {raw_id}")
            raise CEError(404, f"No {resource} found with id {raw_id}")
        row = self.records.get(tbl, seq)
        if row is None or row.deleted or bare_id(row.obj().get(element.id_field(resource))) != bare_id(raw_id):
            raise CEError(404, f"No {resource} found with id {raw_id}")
        return row

    # ------------------------------------------------------------ list / search
    def search(
        self,
        inst: dict[str, Any],
        resource: str,
        *,
        where: str | None = None,
        order_by: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
        next_page: str | None = None,
        return_count: bool = False,
    ) -> Page:
        """``GET /hubs/finance/{resource}`` (reference §3.3, §3.4).

        :returns: the JSON array text plus ``Elements-Returned-Count``, ``Elements-Next-Page-Token``
            (absent on the last page), ``Elements-Total-Count`` (``returnCount``) and
            ``Elements-Error`` (pageSize above the element cap).
        :raises CEError: 400 for bad CEQL / paging parameters, 404 for an unknown resource.
        """
        resource, mapping = self.target(inst, resource)
        if mapping is not None:  # common field names → vendor fields (reference §10.4)
            where = translate_where(mapping, self.instances.element_of(inst), where)
            order_by = translate_order(mapping, order_by)
        element, tbl = self.table(inst, resource)
        resource = element.resolve(resource)
        headers: dict[str, str] = {}
        size = element.default_page_size
        if page_size is not None:
            if page_size < 1:
                raise CEError(400, "pageSize must be a positive integer")
            size = page_size
            if page_size > element.page_cap:
                size = element.page_cap
                headers["Elements-Error"] = (
                    f"The requested pageSize {page_size} exceeds the maximum of "
                    f"{element.page_cap} for {element.key}; the page was truncated to "
                    f"{element.page_cap} records."
                )
        last_seq: int | None = None
        if next_page:
            offset, last_seq = decode_cursor(next_page)
        elif page is not None:
            if page < 1:
                raise CEError(400, "page must be >= 1 (pages are 1-based)")
            if element.cursor_only and page > 1:
                raise CEError(
                    400,
                    f"{element.name} supports only cursor paging: pass the "
                    "Elements-Next-Page-Token header value as nextPage",
                )
            offset = (page - 1) * size
        else:
            offset = 0
        query = self.compile(element, where)
        predicate = self.predicate(element, query)
        if element.style == "qbo":
            qbo_check_queryable(resource, self.template(element, resource), query.fields)
        orders = parse_order_by(order_by)
        sql_order = self._sql_order(element, resource, orders)
        total: int | None = None
        keyset = sql_order == "seq" and last_seq is not None
        page_rows: list[Any] = []
        if query.tree is None and sql_order is not None:
            if keyset:
                page_rows = list(self.records.scan(tbl, order="seq", after_seq=last_seq, limit=size + 1))
            else:
                page_rows = list(self.records.scan(tbl, order=sql_order, offset=offset, limit=size + 1))
            rows = [r.data for r in page_rows]
            if return_count:
                total = self.records.count(tbl)
        else:
            lo, hi = date_window(query.tree, element.date_field)
            window = Window(lo=lo, hi=hi, hi_inclusive=True)
            matches = (
                r
                for r in self.records.scan(
                    tbl, window, order=sql_order or "seq", after_seq=last_seq if keyset else None
                )
                if predicate(r.obj())
            )
            if sql_order is not None and not return_count:
                rows = []
                skip = 0 if keyset else offset
                for i, r in enumerate(matches):
                    if i >= skip:
                        page_rows.append(r)
                        rows.append(r.data)
                        if len(rows) > size:
                            break
            else:
                objs = [r for r in matches]
                if sql_order is None:
                    objs = self._sort_rows(objs, orders)
                total = len(objs)
                rows = [r.data for r in objs[offset : offset + size + 1]]
        has_more = len(rows) > size
        rows = rows[:size]
        headers["Elements-Returned-Count"] = str(len(rows))
        if has_more:
            resume = page_rows[size - 1].seq if sql_order == "seq" and len(page_rows) > size else None
            headers["Elements-Next-Page-Token"] = encode_cursor(offset + size, resume)
        if return_count and total is not None:
            headers["Elements-Total-Count"] = str(total)
        return Page("[" + ",".join(rows) + "]", headers)

    @staticmethod
    def _sql_order(element: ElementDef, resource: str, orders: list[tuple[str, bool]]) -> str | None:
        """An index-backed ORDER BY when ordering by id or the updated field, else ``None``."""
        if not orders:
            return "seq"
        if len(orders) == 1:
            name, desc = orders[0]
            if name == element.id_field(resource):
                return "seq DESC" if desc else "seq"
            if name == element.date_field:
                return "updated DESC, seq DESC" if desc else "updated, seq"
        return None

    @staticmethod
    def _sort_rows(rows: list[Row], orders: list[tuple[str, bool]]) -> list[Row]:
        decoded = [(r, r.obj()) for r in rows]
        for name, desc in reversed(orders):

            def key(pair: tuple[Row, dict], n: str = name) -> tuple[int, Any]:
                return _sort_key(_value(pair[1], n))

            decoded.sort(key=key, reverse=desc)
        return [r for r, _ in decoded]

    # ------------------------------------------------------------ single records
    def get(self, inst: dict[str, Any], resource: str, raw_id: str) -> str:
        resource = self.target(inst, resource)[0]
        element, tbl = self.table(inst, resource)
        return self._row(element, tbl, element.resolve(resource), raw_id).data


def _value(obj: dict, path: str) -> Any:
    value = lookup(obj, path)
    return None if value.__class__ is object else value
