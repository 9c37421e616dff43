"""The shared models (issue 12): the typed manifest, the one timestamp parser, the one bulk wait, the one
event filter, and the old import paths that users' DAGs still use."""

from __future__ import annotations

import importlib
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsDataError,
)
from airflow_provider_cloudelements.models.events import event_date, event_matches, summarize_events
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.models.timestamps import parse_timestamp
from airflow_provider_cloudelements.utils.polling import BulkWait, wait_until_done

UTC = timezone.utc

#: A manifest exactly as a bulk extract returns it through XCom (and writes as _manifest.json).
BULK_XCOM: dict[str, Any] = {
    "manifest_version": 2,
    "element_key": "quickbooks",
    "instance_id": 12,
    "resource": "invoices",
    "mode": "bulk",
    "path": "file:///tmp/x/invoices.20260101T000000123Z-1a2b3c4d.ndjson",
    "format": "ndjson",
    "records": 40,
    "bytes": 23117,
    "job_id": "17",
    "failed_records": 0,
    "errors_path": None,
    "deleted_path": None,
    "deleted": 0,
    "window": {"start": None, "end": "2026-01-01T00:00:00+00:00", "full_refresh": True},
    "full_refresh": True,
    "snapshot_at": "2026-01-01T00:00:00.123Z",
    "complete": True,
    "naive_timezone": "UTC",
    "manifest_path": "file:///tmp/x/_manifest.json",
}


class TestExtractManifest:
    def test_round_trip_keeps_the_exact_xcom_and_file_shape(self) -> None:
        manifest = ExtractManifest.from_xcom(BULK_XCOM)
        assert manifest.to_xcom() == BULK_XCOM
        assert list(manifest.to_xcom()) == list(BULK_XCOM)  # key order of _manifest.json too
        assert json.loads(json.dumps(manifest.to_xcom())) == BULK_XCOM
        assert manifest.deletes_by_absence and manifest.window_end == "2026-01-01T00:00:00.000Z"

    def test_report_keys_are_kept_after_the_v2_keys(self) -> None:
        extra = {"report": "profit-and-loss", "report_path": "file:///r.json", "period": {"start": "2026-01-01"}}
        value = {**BULK_XCOM, "mode": "report", **extra}
        manifest = ExtractManifest.from_xcom(value)
        assert dict(manifest.extra) == extra and manifest.to_xcom() == value

    def test_an_old_v1_xcom_still_loads(self) -> None:
        v1 = {"element_key": "quickbooks", "instance_id": "12", "resource": "invoices", "path": "file:///a.ndjson"}
        v1 |= {"format": "ndjson", "records": 3, "full_refresh": True, "window": {"start": None, "end": None}}
        manifest = ExtractManifest.from_xcom(v1)
        assert (manifest.manifest_version, manifest.instance_id, manifest.snapshot_at) == (1, 12, None)
        assert manifest.complete and manifest.window.full_refresh  # v1: a full refresh without failures

    @pytest.mark.parametrize(
        ("change", "key"),
        [
            ({"instance_id": "twelve"}, "manifest instance_id"),
            ({"records": True}, "manifest records"),
            ({"complete": "perhaps"}, "manifest complete"),
            ({"snapshot_at": "soon"}, "manifest snapshot_at"),
            ({"window": {"start": "later", "end": None}}, "manifest window start"),
            ({"window": []}, "manifest window"),
            ({"naive_timezone": "Mars/Olympus"}, "manifest naive_timezone"),
            ({"element_key": "xero"}, "manifest element_key"),
            ({"path": ""}, "path"),
        ],
    )
    def test_malformed_input_is_a_data_error_naming_the_key(self, change: dict[str, Any], key: str) -> None:
        with pytest.raises(CloudElementsDataError, match=key):
            ExtractManifest.from_xcom({**BULK_XCOM, **change})

    def test_not_a_mapping(self) -> None:
        with pytest.raises(CloudElementsDataError, match="must be a dict"):
            ExtractManifest.from_xcom(str(BULK_XCOM))  # no string parsing of XCom


class TestParseTimestamp:
    def test_number_rules_are_explicit(self) -> None:
        ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
        assert parse_timestamp(ms) == datetime(2026, 1, 1, tzinfo=UTC)  # record fields: epoch ms
        assert parse_timestamp(str(ms)) == datetime(2026, 1, 1, tzinfo=UTC)
        assert parse_timestamp(ms // 1000, numbers="epoch_guess") == datetime(2026, 1, 1, tzinfo=UTC)  # events
        assert parse_timestamp(ms, numbers="epoch_guess") == datetime(2026, 1, 1, tzinfo=UTC)
        with pytest.raises(CloudElementsConfigError, match="Unparseable since"):
            parse_timestamp(ms, numbers=None, what="since")  # parameters: no numbers

    def test_naive_zone_and_leniency(self) -> None:
        assert parse_timestamp("2026-01-01 10:00:00", naive_tz="America/New_York") == datetime(
            2026, 1, 1, 15, tzinfo=UTC
        )
        assert parse_timestamp("2026-01-01T10:00:00Z") == datetime(2026, 1, 1, 10, tzinfo=UTC)
        assert parse_timestamp("Jan 1 2026", strict=False) is None  # record data: ISO only
        assert parse_timestamp("Jan 1 2026", lenient=True) == datetime(2026, 1, 1, tzinfo=UTC)
        assert parse_timestamp(None) is None and parse_timestamp("") is None
        assert type(parse_timestamp("2026-01-01T10:00:00+02:00")) is datetime  # never a pendulum subclass


class TestBulkWait:
    def test_decisions_and_backoff_capped_at_the_deadline(self) -> None:
        now = [0.0]
        wait = BulkWait(4.0, deadline=10.0, clock=lambda: now[0])
        running = {"status": "RUNNING"}
        assert [wait.decide(running).delay for _ in range(3)] == [1.0, 2.0, 4.0]
        now[0] = 8.5
        assert wait.decide(running).delay == 1.5  # never past the deadline
        assert not wait.expired()
        now[0] = 10.0
        assert wait.expired()
        assert [BulkWait.classify({"status": s}).outcome for s in ("COMPLETE", "FAILED", "CANCELED", "QUEUED")] == [
            "success",
            "failed",
            "cancelled",
            "running",
        ]
        with pytest.raises(CloudElementsBulkJobError, match="Unknown bulk job status"):
            BulkWait.classify({"status": "EXPLODED"})

    def test_sync_loop_returns_the_final_payload_or_none_at_the_deadline(self) -> None:
        now = [0.0]
        answers = iter([{"status": "RUNNING"}, {"status": "COMPLETED", "recordsCount": 3}])
        wait = BulkWait(1.0, deadline=5.0, clock=lambda: now[0])
        first = wait.decide({"status": "CREATED"})
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        assert wait_until_done(lambda: next(answers), wait, first, sleep=sleep) == {
            "status": "COMPLETED",
            "recordsCount": 3,
        }
        assert slept == [1.0, 1.0]
        never = BulkWait(1.0, deadline=2.5, clock=lambda: now[0])
        now[0] = 0.0
        assert (
            wait_until_done(lambda: {"status": "RUNNING"}, never, never.decide({"status": "RUNNING"}), sleep=sleep)
            is None
        )


class TestEventFilter:
    NESTED = {
        "id": "2",
        "date": 1_767_225_600,  # epoch seconds in a webhook envelope
        "providerData": json.dumps({"message": {"events": [{"objectType": "Customers", "eventType": "updated"}]}}),
    }

    def test_types_are_case_insensitive_and_found_in_nested_envelopes(self) -> None:
        assert event_matches(self.NESTED, object_types=["customers"], event_types=["UPDATED"])
        assert not event_matches(self.NESTED, object_types=["invoices"])
        assert event_date(self.NESTED) == datetime(2026, 1, 1, tzinfo=UTC)
        assert event_matches(self.NESTED, since=datetime(2026, 1, 1, tzinfo=UTC))
        assert not event_matches(self.NESTED, until=datetime(2026, 1, 1, tzinfo=UTC))  # half-open
        assert event_matches({"id": "3"}, since=datetime(2026, 1, 1, tzinfo=UTC))  # no date: not dropped

    def test_since_is_floored_to_the_millisecond(self) -> None:
        """Event dates have millisecond precision: one in the watermark's millisecond counts."""
        event = {"id": "4", "eventDate": "2026-01-01T00:00:00.123Z"}
        assert event_matches(event, since=datetime(2026, 1, 1, 0, 0, 0, 123_999, tzinfo=UTC))
        assert not event_matches(event, since=datetime(2026, 1, 1, 0, 0, 0, 124_000, tzinfo=UTC))

    def test_summary_names_a_nested_type(self) -> None:
        (summary,) = summarize_events([self.NESTED])
        assert (summary["objectType"], summary["eventType"]) == ("Customers", "updated")


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("operators.extract", ["CloudElementsBulkExtractOperator", "CloudElementsPagedExtractOperator"]),
        ("operators.changes", ["CloudElementsChangedRecordsOperator"]),
        ("operators.sql", ["CloudElementsSqlUpsertOperator"]),
    ],
)
def test_old_import_paths_re_export_the_operators(old: str, names: list[str]) -> None:
    module = importlib.import_module(f"airflow_provider_cloudelements.{old}")
    for name in names:
        assert getattr(module, name).__module__.startswith("airflow_provider_cloudelements.transfers.")


def test_as_instance_id_still_imports_from_exceptions() -> None:
    from airflow_provider_cloudelements.exceptions import as_instance_id
    from airflow_provider_cloudelements.utils.validation import as_instance_id as moved

    assert as_instance_id is moved and moved("12") == 12
