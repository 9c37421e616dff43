"""Finance-hub record writes and activity (reference §3.1, §3.5, §5): create, update, delete, simulate.

* ``POST /hubs/finance/{resource}`` (:meth:`HubService.create`): system fields (id, version,
  timestamps) are assigned here; 400 for a body that is not an object or lacks required fields, 405 for
  a singleton resource (QBO ``company-info``, ``preferences``).
* ``PATCH`` (merge) / ``PUT`` (replace) ``/hubs/finance/{resource}/{id}`` (:meth:`HubService.update`):
  bumps the version and updated time; 400 on a stale QBO ``syncToken`` / QBE ``EditSequence`` (§3.5).
* ``DELETE /hubs/finance/{resource}/{id}`` (:meth:`HubService.delete`): soft or hard per element and
  resource (see :mod:`.elements`); 405 for a singleton resource.
* Activity simulation (:meth:`HubService.simulate`, behind ``POST /_emulator/activity``): seeded
  creates / updates / deletes with real-clock timestamps, so events follow (§5).

A write through a common resource is mapped back to vendor fields first (§10.3). Shared by the hub
router, bulk uploads and :meth:`EmulatorState.simulate_activity`, so every change goes through one code
path that bumps the updated time / version and records an event. The reads (list/search, get,
resolution, CEQL) are in :mod:`.hubquery`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from cloudelements_emulator import generator, timefmt
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.extensions import ResourceExtensions
from cloudelements_emulator.hubquery import HubQuery
from cloudelements_emulator.instances import InstanceService
from cloudelements_emulator.records import RecordRepo, Row, dumps
from cloudelements_emulator.typing_rules import coerce_like

ChangeHook = Callable[[dict[str, Any], str, Any, str, dict, int], None]

_NOTE_FIELD = {"qbo": "privateNote", "qbe": "Memo", "fb": "notes"}


class HubService(HubQuery):
    """Record operations against the datasets of instances: the reads of :class:`HubQuery`, writes, activity."""

    def __init__(self, records: RecordRepo, instances: InstanceService, on_change: ChangeHook, seed: int) -> None:
        super().__init__(records, instances, seed)
        self.on_change = on_change
        self._activity_counter = 0
        self._activity_lock = threading.Lock()
        self.extensions = ResourceExtensions()

    # ------------------------------------------------------------ single records
    def _writable(self, element: ElementDef, resource: str, verb: str) -> None:
        if resource in element.singletons:
            raise CEError(405, f"{verb} is not supported for {resource}: {element.name} has one {resource} record")

    def create(self, inst: dict[str, Any], resource: str, body: Any) -> dict[str, Any]:
        """Create a record; system fields (id, version, timestamps) are assigned by the emulator.

        :raises CEError: 400 when the body is not an object or lacks the resource's required fields.
        """
        resource, body = self._to_vendor(inst, resource, body)
        element, tbl = self.table(inst, resource)
        resource = element.resolve(resource)
        self._writable(element, resource, "POST")
        if not isinstance(body, dict):
            raise CEError(400, "Request body must be a JSON object")
        body = coerce_like(body, self.template(element, resource))
        missing = [f for f in element.required_fields.get(resource, ()) if body.get(f) in (None, "", [], {})]
        if missing:
            raise CEError(
                400,
                f"Missing required field(s) for {resource}: {', '.join(missing)}",
                provider_message=f"Required parameter {missing[0]} is missing in the request",
            )
        clean = generator.strip_system(element, resource, body)
        with self.records.store.write_lock:
            now = timefmt.now_ms()
            seq = self.records.max_seq(tbl) + 1
            record = generator.stamp(element, resource, clean, seq, now, now, 0, self.records.composite_qbo_ids)
            self.records.insert(
                tbl,
                seq,
                timefmt.truncate(now, element.date_kind),
                timefmt.truncate(now, element.date_kind),
                dumps(record),
                now,
            )
            self.on_change(inst, resource, record[element.id_field(resource)], "CREATED", record, now)
        return record

    def update(self, inst: dict[str, Any], resource: str, raw_id: str, body: Any, full: bool) -> dict[str, Any]:
        """PATCH (merge) or PUT (replace) a record; bumps version and updated time.

        :raises CEError: 400 on a stale QBO ``syncToken`` / QBE ``EditSequence`` (reference §3.5),
            404 for unknown ids.
        """
        resource, body = self._to_vendor(inst, resource, body)
        element, tbl = self.table(inst, resource)
        resource = element.resolve(resource)
        if not isinstance(body, dict):
            raise CEError(400, "Request body must be a JSON object")
        body = coerce_like(body, self.template(element, resource))
        with self.records.store.write_lock:
            row = self._row(element, tbl, resource, raw_id)
            current = row.obj()
            self._check_version(element, current, body, raw_id)
            base = {} if full else generator.strip_system(element, resource, current)
            base.update(generator.strip_system(element, resource, body))
            return self._write(inst, element, tbl, resource, row, current, base, "UPDATED")

    def delete(self, inst: dict[str, Any], resource: str, raw_id: str) -> None:
        """Soft or hard delete per element/resource policy (see :mod:`.elements`)."""
        resource = self.target(inst, resource)[0]
        element, tbl = self.table(inst, resource)
        resource = element.resolve(resource)
        self._writable(element, resource, "DELETE")
        with self.records.store.write_lock:
            row = self._row(element, tbl, resource, raw_id)
            self._delete_row(inst, element, tbl, resource, row)

    def _delete_row(self, inst: dict[str, Any], element: ElementDef, tbl: str, resource: str, row: Row) -> None:
        current = row.obj()
        if resource in element.soft_delete:
            base = generator.strip_system(element, resource, current)
            marks: dict[str, dict[str, Any]] = {
                "qbo": {"active": False},
                "qbe": {"IsActive": False},
                "fb": {"vis_state": 1},
            }
            base.update(marks[element.style])
            self._write(inst, element, tbl, resource, row, current, base, "DELETED")
            return
        now = timefmt.now_ms()
        self.records.replace(tbl, row.seq, timefmt.truncate(now, element.date_kind), row.data, now, deleted=True)
        self.on_change(inst, resource, current[element.id_field(resource)], "DELETED", current, now)

    def _to_vendor(self, inst: dict[str, Any], resource: str, body: Any) -> tuple[str, Any]:
        """A write through a common resource: the vendor resource and the body mapped back (§10.3)."""
        resource, mapping = self.target(inst, resource)
        if mapping is not None and isinstance(body, dict):
            body = mapping.to_vendor(body)
        return resource, body

    @staticmethod
    def _check_version(element: ElementDef, current: dict, body: dict, raw_id: str) -> None:
        sent = body.get("syncToken", body.get("SyncToken")) if element.style == "qbo" else body.get("EditSequence")
        if element.style == "qbo" and "|" in str(raw_id):
            sent = str(raw_id).split("|", 1)[1]
        have = generator.version_of(element, current)
        if sent is None or element.style == "fb" or str(sent) == str(have):
            return
        if element.style == "qbo":
            raise CEError(
                400,
                "Stale object error: the syncToken does not match the latest version",
                provider_message="Stale Object Error : You and another user were working on the same "
                "thing. errorCode=005010; statusCode=400",
            )
        raise CEError(
            400,
            "The provided edit sequence is out-of-date",
            provider_message=f'statusCode=3200: The provided edit sequence "{sent}" is out-of-date.',
        )

    def _write(
        self,
        inst: dict[str, Any],
        element: ElementDef,
        tbl: str,
        resource: str,
        row: Row,
        current: dict,
        base: dict,
        event_type: str,
    ) -> dict[str, Any]:
        now = timefmt.now_ms()
        version = int(current.get("syncToken") or 0) + 1 if element.style == "qbo" else 0
        record = generator.stamp(
            element, resource, base, row.seq, row.created, now, version, self.records.composite_qbo_ids
        )
        if element.style == "qbe":
            record["EditSequence"] = str(max(int(current.get("EditSequence") or 0) + 1, now // 1000))
        self.records.replace(tbl, row.seq, timefmt.truncate(now, element.date_kind), dumps(record), now)
        self.on_change(inst, resource, record[element.id_field(resource)], event_type, record, now)
        return record

    # ------------------------------------------------------------ activity simulation
    def simulate(
        self, inst: dict[str, Any], resources: list[str] | None, creates: int, updates: int, deletes: int
    ) -> dict[str, dict[str, list[Any]]]:
        """Create/update/delete records with real-clock timestamps (reference §5; events follow).

        Updates change the note field (QBO ``privateNote``, QBE ``Memo``, FreshBooks ``notes``);
        deletes follow the element's soft/hard policy. Picks are seeded from the config seed.
        """
        element = self.instances.element_of(inst)
        with self._activity_lock:
            self._activity_counter += 1
            rng = random.Random(f"{self.seed}:activity:{inst['id']}:{self._activity_counter}")
        pools = generator.pools(self.seed)
        out: dict[str, dict[str, list[Any]]] = {}
        for resource in resources or list(element.polling_resources or element.resources):
            _, tbl = self.table(inst, resource)
            id_field = element.id_field(resource)
            result: dict[str, list[Any]] = {"created": [], "updated": [], "deleted": []}
            build = generator.builder_for(element, resource)
            n = max(self.records.max_seq(tbl), 1)
            for _ in range(creates):
                body = build(rng, pools, n + 1, timefmt.now_ms(), n)
                result["created"].append(self.create(inst, resource, body)[id_field])
            picks = self._pick_live(element, tbl, rng, updates + deletes)
            for row in picks[:updates]:
                with self.records.store.write_lock:
                    fresh = self.records.get(tbl, row.seq) or row
                    current = fresh.obj()
                    base = generator.strip_system(element, resource, current)
                    base[_NOTE_FIELD[element.style]] = rng.choice(pools.sentences)
                    rec = self._write(inst, element, tbl, resource, fresh, current, base, "UPDATED")
                result["updated"].append(rec[id_field])
            for row in picks[updates:]:
                with self.records.store.write_lock:
                    self._delete_row(inst, element, tbl, resource, self.records.get(tbl, row.seq) or row)
                result["deleted"].append(row.obj()[id_field])
            out[resource] = result
        return out

    def _pick_live(self, element: ElementDef, tbl: str, rng: random.Random, k: int) -> list[Row]:
        """``k`` distinct live, active records (random probes, then a scan as fallback)."""
        if k <= 0:
            return []
        top = self.records.max_seq(tbl)
        chosen: dict[int, Row] = {}
        for _ in range(k * 30):
            if len(chosen) >= k or top == 0:
                break
            row = self.records.get(tbl, rng.randint(1, top))
            if row and not row.deleted and row.seq not in chosen and _active(element, row.obj()):
                chosen[row.seq] = row
        if len(chosen) < k:
            for row in self.records.scan(tbl):
                if len(chosen) >= k:
                    break
                if row.seq not in chosen and _active(element, row.obj()):
                    chosen[row.seq] = row
        return list(chosen.values())


def _active(element: ElementDef, obj: dict) -> bool:
    if element.style == "qbo":
        return obj.get("active", True) is not False
    if element.style == "qbe":
        return obj.get("IsActive", True) is not False
    return obj.get("vis_state", 0) == 0
