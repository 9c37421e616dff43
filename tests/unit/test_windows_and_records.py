from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pendulum
import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsBulkJobError, CloudElementsConfigError
from airflow_provider_cloudelements.models.status import CloudElementsBulkJobStatus
from airflow_provider_cloudelements.models.timestamps import parameter_time, parse_timestamp
from airflow_provider_cloudelements.models.window import DEFAULT_LOOKBACK, resolve_window
from airflow_provider_cloudelements.utils.elements import ELEMENTS
from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_version, updated_at

UTC = timezone.utc
START = pendulum.datetime(2026, 3, 1, 10, tz="UTC")
END = pendulum.datetime(2026, 3, 1, 11, tz="UTC")


def ctx(prev: object = "x") -> dict[str, object]:
    return {"data_interval_start": START, "data_interval_end": END, "prev_data_interval_start_success": prev}


def test_auto_window_is_full_on_first_run_and_interval_after() -> None:
    first = resolve_window(ctx(prev=None))
    assert first.full_refresh and first.start is None and first.end == END
    later = resolve_window(ctx())
    assert not later.full_refresh and (later.start, later.end) == (START - DEFAULT_LOOKBACK, END)
    exact = resolve_window(ctx(), lookback=0)
    assert (exact.start, exact.end) == (START, END)


def test_default_lookback_applies_to_data_intervals_not_to_explicit_starts() -> None:
    assert DEFAULT_LOOKBACK == timedelta(minutes=10)
    assert resolve_window(ctx()).start == START - DEFAULT_LOOKBACK
    explicit = resolve_window(ctx(), window_start="2026-03-01T10:00:00Z")
    assert explicit.start == START  # the user asked for exactly this start
    assert resolve_window(ctx(), window_start="2026-03-01T10:00:00Z", lookback=60).start == START - timedelta(minutes=1)


@pytest.mark.parametrize("bad", [-1, "ten minutes", "-5", True, float("nan"), timedelta(seconds=-1), [600]])
def test_lookback_is_validated_when_the_operator_is_built(bad: object) -> None:
    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import (
        CloudElementsPagedExtractOperator,
    )

    with pytest.raises(CloudElementsConfigError, match="lookback"):
        CloudElementsPagedExtractOperator(task_id="t", resource="invoices", instance_id=1, lookback=bad)


def test_a_templated_lookback_is_rendered_then_validated_before_any_call() -> None:
    """``lookback`` is a template field: a template passes the constructor, its rendering is checked at run time."""
    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import (
        CloudElementsPagedExtractOperator,
    )

    assert "lookback" in CloudElementsPagedExtractOperator.template_fields
    op = CloudElementsPagedExtractOperator(
        task_id="t", resource="invoices", instance_id=1, lookback="{{ params.lookback_seconds }}"
    )
    op.render_template_fields({"params": {"lookback_seconds": 120}})
    assert op.lookback == "120"
    assert resolve_window(ctx(), lookback=op.lookback).start == START - timedelta(minutes=2)
    op = CloudElementsPagedExtractOperator(task_id="t", resource="invoices", instance_id=1, lookback="{{ params.x }}")
    op.render_template_fields({"params": {"x": "soon"}})
    with pytest.raises(CloudElementsConfigError, match="lookback must be a timedelta or a number of seconds"):
        resolve_window(ctx(), lookback=op.lookback)


def test_lookback_widens_start_only() -> None:
    w = resolve_window(ctx(), lookback=timedelta(minutes=15))
    assert w.start == START - timedelta(minutes=15) and w.end == END
    assert resolve_window(ctx(), lookback=900).start == w.start


def test_consecutive_windows_have_no_gap_and_no_overlap() -> None:
    a = resolve_window(
        {"data_interval_start": START, "data_interval_end": END, "prev_data_interval_start_success": 1}, lookback=0
    )
    b = resolve_window(
        {
            "data_interval_start": END,
            "data_interval_end": END + timedelta(hours=1),
            "prev_data_interval_start_success": 1,
        },
        lookback=0,
    )
    assert a.end == b.start


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_start": "not a date"},
        {"window_start": "2026-03-02T00:00:00Z", "window_end": "2026-03-01T00:00:00Z"},
        {"lookback": -5},
        {"full_refresh": "sometimes"},
    ],
)
def test_bad_window_inputs_raise_typed_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(CloudElementsConfigError):
        resolve_window(ctx(), **kwargs)  # type: ignore[arg-type]


def test_to_utc_normalises_offsets_and_naive() -> None:
    assert parameter_time("2026-03-01T12:00:00+02:00", what="date") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert parameter_time(datetime(2026, 3, 1, 10), what="date") == datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767225600000, datetime(2026, 1, 1, tzinfo=UTC)),
        ("1767225600000", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01 00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def test_parse_instant_accepts_every_element_format(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value, strict=False) == expected


def test_updated_at_and_soft_delete_per_element() -> None:
    qbo = {"id": "1", "active": False, "metaData": {"lastUpdatedTime": 1767225600000}}
    assert updated_at(qbo, "quickbooks") == datetime(2026, 1, 1, tzinfo=UTC)
    assert is_soft_deleted(qbo, "quickbooks")
    assert not is_soft_deleted({"IsActive": True}, "quickbooksonprem")
    assert is_soft_deleted({"IsActive": "false"}, "quickbooksonprem")
    assert is_soft_deleted({"vis_state": 1}, "freshbooksv2")
    assert not is_soft_deleted({"vis_state": 2}, "freshbooksv2")


def test_version_field_per_element() -> None:
    assert {k: spec.version_field for k, spec in ELEMENTS.items()} == {
        "quickbooks": "syncToken",
        "quickbooksonprem": "EditSequence",
        "freshbooksv2": None,
        "freshbooks": None,
    }


@pytest.mark.parametrize(
    ("element", "record", "expected"),
    [
        ("quickbooks", {"id": "22|33", "syncToken": "33"}, 33),
        ("quickbooks", {"syncToken": 4}, 4),
        ("quickbooks", {"syncToken": " 7 "}, 7),
        ("quickbooksonprem", {"EditSequence": "1484948017"}, 1484948017),
        ("quickbooks", {"id": "22|33"}, None),  # missing
        ("quickbooks", {"syncToken": "3a"}, None),  # not an integer
        ("quickbooks", {"syncToken": 2.5}, None),
        ("quickbooks", {"syncToken": True}, None),
        ("quickbooks", {"syncToken": ""}, None),
        ("quickbooks", {"syncToken": str(2**63)}, None),  # beyond BIGINT
        ("freshbooksv2", {"id": 1, "syncToken": "3"}, None),  # FreshBooks has no version field
    ],
)
def test_record_version(element: str, record: dict[str, object], expected: int | None) -> None:
    assert record_version(record, element) == expected


def test_status_enum_accepts_both_completion_spellings_and_rejects_unknown() -> None:
    assert CloudElementsBulkJobStatus.parse("completed").is_success()
    assert CloudElementsBulkJobStatus.parse("COMPLETE").is_success()
    assert CloudElementsBulkJobStatus.parse("canceled") is CloudElementsBulkJobStatus.CANCELLED
    assert not CloudElementsBulkJobStatus.parse("RUNNING").is_terminal()
    assert CloudElementsBulkJobStatus.parse("FAILED").is_terminal()
    with pytest.raises(CloudElementsBulkJobError):
        CloudElementsBulkJobStatus.parse("EXPLODED")


def test_zero_width_interval_runs_from_previous_successful_end() -> None:
    prev_end = START - timedelta(hours=2)
    w = resolve_window(
        {
            "data_interval_start": END,
            "data_interval_end": END,
            "prev_data_interval_start_success": prev_end - timedelta(hours=1),
            "prev_data_interval_end_success": prev_end,
        },
        lookback=0,
    )
    assert (w.start, w.end, w.full_refresh) == (prev_end, END, False)


def test_zero_width_first_run_is_a_full_load() -> None:
    w = resolve_window(
        {
            "data_interval_start": END,
            "data_interval_end": END,
            "prev_data_interval_start_success": None,
            "prev_data_interval_end_success": None,
        }
    )
    assert w.full_refresh and w.start is None and w.end == END


def test_config_errors_fail_without_retry() -> None:
    from airflow.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException):
        resolve_window(ctx(), window_start="garbage")


@pytest.mark.parametrize(
    "value",
    [{"id": "1", "name": "Zoë 🧾", "amount": 12.5, "nested": {"a": [1, None, True]}}, {"big": 2**70}, {1: "x"}],
)
def test_jsonfast_matches_the_stdlib_and_falls_back(value: object) -> None:
    import json

    from airflow_provider_cloudelements.utils import jsonfast

    text = jsonfast.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads('{"n": NaN}')["n"] != jsonfast.loads('{"n": NaN}')["n"]  # stdlib fallback
