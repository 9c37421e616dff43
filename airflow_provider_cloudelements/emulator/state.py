"""In-process emulator state: ground truth and admin operations (the ``emu.state`` object)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Any

from airflow_provider_cloudelements.emulator import timefmt
from airflow_provider_cloudelements.emulator.bulk import BulkService
from airflow_provider_cloudelements.emulator.config import EmulatorConfig
from airflow_provider_cloudelements.emulator.errors import CEError
from airflow_provider_cloudelements.emulator.events import EventService
from airflow_provider_cloudelements.emulator.faults import FaultInjector
from airflow_provider_cloudelements.emulator.hubservice import HubService
from airflow_provider_cloudelements.emulator.instances import InstanceService
from airflow_provider_cloudelements.emulator.records import RecordRepo
from airflow_provider_cloudelements.emulator.stats import Stats
from airflow_provider_cloudelements.emulator.store import Store
from airflow_provider_cloudelements.emulator.webhooks import Dispatcher

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
