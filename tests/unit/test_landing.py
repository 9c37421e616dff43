from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_cloudelements.transfers.landing import atomic_write, partition_path, staged_file


def test_partition_path_is_stable_per_interval(tmp_path: Path) -> None:
    kwargs = dict(
        element_key="quickbooks",
        instance_id=7,
        resource="invoices",
        window_start=datetime(2026, 3, 1, 10, tzinfo=timezone.utc),
        window_end=datetime(2026, 3, 1, 11, tzinfo=timezone.utc),
    )
    a = partition_path(f"file://{tmp_path}", **kwargs)  # type: ignore[arg-type]
    b = partition_path(ObjectStoragePath(f"file://{tmp_path}"), **kwargs)  # type: ignore[arg-type]
    assert str(a) == str(b)
    assert str(a).endswith("quickbooks/instance=7/invoices/window=20260301T100000Z_20260301T110000Z")


def test_staged_file_publishes_only_on_publish(tmp_path: Path) -> None:
    final = ObjectStoragePath(f"file://{tmp_path}/out/data.ndjson")
    with staged_file(final) as (handle, publish):
        handle.write(b'{"id": 1}\n')
        assert not Path(final.path).exists()
        publish()
    assert Path(final.path).read_bytes() == b'{"id": 1}\n'
    assert [p.name for p in Path(final.path).parent.iterdir()] == ["data.ndjson"]


def test_failure_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    final = ObjectStoragePath(f"file://{tmp_path}/data.ndjson")
    with atomic_write(final) as handle:
        handle.write(b"old\n")
    with pytest.raises(RuntimeError), atomic_write(final) as handle:
        handle.write(b"new partial")
        raise RuntimeError("connection dropped")
    assert Path(final.path).read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.ndjson"]


def test_unpublished_staged_file_is_removed(tmp_path: Path) -> None:
    final = ObjectStoragePath(f"file://{tmp_path}/x.ndjson")
    with staged_file(final) as (handle, _publish):
        handle.write(b"never published")
    assert list(tmp_path.iterdir()) == []


def test_partition_labels_keep_sub_second_windows_apart(tmp_path: Path) -> None:
    base = f"file://{tmp_path}"
    second = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone.utc)

    def label(start: datetime, end: datetime) -> str:
        path = partition_path(
            base, element_key="quickbooks", instance_id=7, resource="invoices", window_start=start, window_end=end
        )
        return path.name

    a = label(second + timedelta(microseconds=100_000), second + timedelta(microseconds=500_000))
    b = label(second + timedelta(microseconds=500_000), second + timedelta(microseconds=900_001))
    assert a != b
    assert a == "window=20260301T100000.100000Z_20260301T100000.500000Z"
    assert label(second, second + timedelta(hours=1)) == "window=20260301T100000Z_20260301T110000Z"  # unchanged


def test_run_tokens_sort_by_snapshot_and_name_files() -> None:
    from airflow_provider_cloudelements.transfers.landing import landed_name, run_token, token_of

    early = run_token(datetime(2026, 3, 1, 10, 0, 0, 5000, tzinfo=timezone.utc), unique="job-1")
    late = run_token(datetime(2026, 3, 1, 10, 0, 0, 6000, tzinfo=timezone.utc))
    assert early < late and early == run_token(datetime(2026, 3, 1, 10, 0, 0, 5000, tzinfo=timezone.utc), "job-1")
    name = landed_name("bill-payments", early, "deleted.ndjson")
    assert token_of(name) == early and token_of("invoices.ndjson") is None and token_of("_manifest.json") is None
