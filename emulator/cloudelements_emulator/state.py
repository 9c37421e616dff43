"""In-process emulator state: ground truth and admin operations (the ``emu.state`` object)."""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
from typing import Any

from cloudelements_emulator import generator, timefmt
from cloudelements_emulator.bulk import BulkService
from cloudelements_emulator.config import EmulatorConfig
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.events import EventService
from cloudelements_emulator.faults import FaultInjector
from cloudelements_emulator.hubservice import HubService
from cloudelements_emulator.instances import InstanceService
from cloudelements_emulator.qbo_ids import bare_id
from cloudelements_emulator.records import RecordRepo
from cloudelements_emulator.stats import Stats
from cloudelements_emulator.store import Store
from cloudelements_emulator.webhooks import Dispatcher

log = logging.getLogger(__name__)


class EmulatorState:
    """Composes storage and services; every public method is thread-safe."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._temp_dir = None if config.data_dir else tempfile.mkdtemp(prefix="ce-emulator-")
        self.data_dir = config.data_dir or self._temp_dir
        assert self.data_dir is not None
        self.store = Store(self.data_dir)
        self.stats_counters = Stats()
        self.faults = FaultInjector(config.faults, config.seed)
        anchor_ms = timefmt.require_instant(config.anchor, "anchor")
        self.record_repo = RecordRepo(self.store, config.seed, anchor_ms, config.records_for)
        self.instances = InstanceService(self.store)
        self.dispatcher = Dispatcher(
            self.store,
            config.webhook_backoff_factor,
            config.webhook_max_attempts,
            config.webhook_timeout_seconds,
            on_result=self._on_delivery,
        )
        self.events = EventService(
            self.store, self.instances, self.record_repo, self.dispatcher, config.poller_interval_seconds
        )
        self.hub = HubService(self.record_repo, self.instances, self.events.on_change, config.seed)
        self.record_repo.composite_qbo_ids = config.qbo_sync_token_ids  # QBO ids "<id>|<syncToken>"
        self.bulk = BulkService(
            self.store,
            self.instances,
            self.hub,
            self.dispatcher,
            self.faults,
            self.stats_counters,
            config.bulk_done_status,
            config.bulk_min_seconds,
        )

    def _on_delivery(self, delivery: dict[str, Any]) -> None:
        self.stats_counters.count_webhook_attempt()
        self.events.on_delivery_result(delivery)

    # ------------------------------------------------------------ admin API (contract)
    def create_instance(
        self,
        element_key: str,
        name: str,
        configuration: dict[str, Any] | None = None,
        provider_data: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> dict:
        """Create an instance without create-body validation; returns it incl. ``token`` (secrets masked)."""
        inst = self.instances.create(
            {
                "element": {"key": element_key},
                "name": name,
                "configuration": configuration or {},
                "providerData": provider_data or {},
                "tags": tags or [],
            },
            validate=False,
        )
        return self.instances.public(inst)

    def records(self, instance_id: int, resource: str, include_deleted: bool = False) -> list[dict]:
        """Ground truth: the JSON objects the API serves, ordered by id (creation order).

        ``include_deleted`` adds hard-deleted records (their last state); soft-deleted records are
        always included (they are still served, with ``active=false`` etc.).
        """
        inst = self.instances.get(instance_id)
        _, tbl = self.hub.table(inst, resource)
        return [row.obj() for row in self.record_repo.scan(tbl, include_deleted=include_deleted)]

    def generate(self, instance_id: int, resource: str) -> int:
        """Force generation of one dataset; returns the number of live records."""
        inst = self.instances.get(instance_id)
        _, tbl = self.hub.table(inst, resource)
        return self.record_repo.count(tbl)

    def simulate_activity(
        self,
        instance_id: int,
        resources: list[str] | None = None,
        creates: int = 2,
        updates: int = 2,
        deletes: int = 1,
    ) -> dict[str, dict[str, list[Any]]]:
        """Create/update/delete records per resource with real-clock timestamps (events follow)."""
        return self.hub.simulate(self.instances.get(instance_id), resources, creates, updates, deletes)

    def simulate_all(self, creates: int = 2, updates: int = 2, deletes: int = 1) -> dict[int, Any]:
        """Activity on every generated dataset of every enabled instance.

        Used by the CLI option ``--simulate-activity-every``.
        """
        out = {}
        for inst in self.instances.all():
            if inst.get("disabled"):
                continue
            resources = self.record_repo.generated_resources(inst["id"])
            if resources:
                out[inst["id"]] = self.hub.simulate(inst, resources, creates, updates, deletes)
        return out

    # ------------------------------------------------------------ single-record activity (model-based test)
    def create_record(self, instance_id: int, resource: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create one record (generated business fields, ``fields`` merged over them).

        :returns: :meth:`_change_result` of the new record.
        """
        inst = self.instances.get(instance_id)
        element, tbl = self.hub.table(inst, resource)
        rng = random.Random(f"{self.config.seed}:create:{instance_id}:{resource}:{self.record_repo.max_seq(tbl)}")
        n = max(self.record_repo.max_seq(tbl), 1)
        body = generator.builder_for(element, resource)(
            rng, generator.pools(self.config.seed), n + 1, timefmt.now_ms(), n
        )
        body.update(fields or {})
        record = self.hub.create(inst, resource, body)
        return self._change_result(inst, resource, record[element.id_field(resource)])

    def edit_record(self, instance_id: int, resource: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Merge ``fields`` into a live record (a new version: updated time and version bumped).

        :raises CEError: 404 for an unknown or hard-deleted record.
        """
        inst = self.instances.get(instance_id)
        self._seq(inst, resource, record_id)
        self.hub.update(inst, resource, str(record_id), dict(fields), full=False)
        return self._change_result(inst, resource, record_id)

    def delete_record(self, instance_id: int, resource: str, record_id: str, hard: bool = False) -> dict[str, Any]:
        """Delete one record by the element's soft/hard policy, or always hard with ``hard=True``.

        A DELETED event is recorded either way.

        :raises CEError: 404 for an unknown or hard-deleted record.
        """
        inst = self.instances.get(instance_id)
        self._seq(inst, resource, record_id)
        if not hard:
            self.hub.delete(inst, resource, str(record_id))
            return self._change_result(inst, resource, record_id)
        element, tbl = self.hub.table(inst, resource)
        with self.record_repo.store.write_lock:
            row = self.hub._row(element, tbl, resource, str(record_id))
            now = timefmt.now_ms()
            self.record_repo.replace(tbl, row.seq, timefmt.truncate(now, element.date_kind), row.data, now, True)
            self.hub.on_change(inst, resource, row.obj()[element.id_field(resource)], "DELETED", row.obj(), now)
        return self._change_result(inst, resource, record_id)

    def restore_record(self, instance_id: int, resource: str, record_id: str) -> dict[str, Any]:
        """Bring a soft- or hard-deleted record back as a new live version (UPDATED event).

        :raises CEError: 404 for an unknown record, 409 when it is not deleted.
        """
        inst = self.instances.get(instance_id)
        element, tbl = self.hub.table(inst, resource)
        seq = self._seq(inst, resource, record_id)
        with self.record_repo.store.write_lock:
            row = self.record_repo.get(tbl, seq)
            if row is None or bare_id(row.obj().get(element.id_field(resource))) != bare_id(record_id):
                raise CEError(404, f"No {resource} found with id {record_id}")
            current = row.obj()
            marks = {"qbo": ("active", False, True), "qbe": ("IsActive", False, True), "fb": ("vis_state", 1, 0)}
            name, off, on = marks[element.style]
            if not row.deleted and current.get(name) != off:
                raise CEError(409, f"{resource} {record_id} is not deleted")
            base = generator.strip_system(element, resource, current)
            if name in base:
                base[name] = on
            self.hub._write(inst, element, tbl, resource, row, current, base, "UPDATED")
        return self._change_result(inst, resource, record_id)

    def _seq(self, inst: dict[str, Any], resource: str, record_id: Any) -> int:
        """Creation number of ``record_id``. :raises CEError: 404 when it is no id of this element."""
        element, _ = self.hub.table(inst, resource)
        try:
            seq = generator.seq_of(element, str(record_id))
        except ValueError:  # e.g. "²" passes str.isdigit() but not int()
            seq = None
        if seq is None:
            raise CEError(404, f"No {resource} found with id {record_id}")
        return seq

    def _change_result(self, inst: dict[str, Any], resource: str, record_id: Any) -> dict[str, Any]:
        """Read one record right after a change.

        Returns ``{"id" (stable: a QBO id without its ``|syncToken``, which changes on every update),
        "record" (as served now), "changed_ms" (exact server time of the change), "deleted" (hard-deleted)}``.
        """
        element, tbl = self.hub.table(inst, resource)
        row = self.record_repo.get(tbl, self._seq(inst, resource, record_id))
        if row is None:
            raise CEError(404, f"No {resource} found with id {record_id}")
        stable = bare_id(record_id) if element.style == "qbo" else record_id
        return {"id": stable, "record": row.obj(), "changed_ms": row.changed, "deleted": row.deleted}

    def set_faults(self, **fields: Any) -> dict[str, Any]:
        """Change fault fields (partial). :raises ValueError: for unknown fields."""
        return self.faults.update(**fields).to_dict()

    def reset_faults(self) -> None:
        self.faults.reset()

    def stats(self) -> dict[str, Any]:
        return self.stats_counters.snapshot()

    def instance_by_token(self, token: str) -> dict[str, Any]:
        return self.instances.by_token(token)

    def close(self) -> None:
        """Stop background threads, close SQLite, remove a temporary data dir."""
        self.bulk.stop()
        self.events.stop()
        self.dispatcher.stop()
        self.store.close()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


__all__ = ["CEError", "EmulatorState"]
