"""Activity simulation, persistence across restarts with data_dir, admin HTTP routes, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from cloudelements_emulator import EmulatorConfig, EmulatorServer, timefmt
from cloudelements_emulator.qbo_ids import bare_id

from .conftest import Api


def test_simulate_activity_changes_ground_truth(api: Api) -> None:
    inst = api.instance()
    # QBO ids read "<id>|<syncToken>" and an update bumps the token: compare by the part before "|"
    before = {bare_id(r["id"]): r for r in api.emu.state.records(inst["id"], "invoices")}
    started = timefmt.now_ms()
    done = api.emu.state.simulate_activity(inst["id"], ["invoices", "customers"], creates=2, updates=2, deletes=1)
    after = {bare_id(r["id"]): r for r in api.emu.state.records(inst["id"], "invoices")}
    inv = {kind: [bare_id(i) for i in ids] for kind, ids in done["invoices"].items()}
    assert len(inv["created"]) == 2 and len(inv["updated"]) == 2 and len(inv["deleted"]) == 1
    assert set(inv["created"]) == set(after) - set(before)
    assert set(inv["deleted"]) == set(before) - set(after)  # invoices are hard-deleted
    for rid in inv["updated"] + inv["created"]:
        assert after[rid]["metaData"]["lastUpdatedTime"] >= started
    for rid in inv["updated"]:
        assert int(after[rid]["syncToken"]) == int(before[rid]["syncToken"]) + 1
    customers = {bare_id(r["id"]): r for r in api.emu.state.records(inst["id"], "customers")}
    assert customers[bare_id(done["customers"]["deleted"][0])]["active"] is False  # soft delete
    served = api.get("/hubs/finance/invoices", inst["token"], params={"pageSize": 1000}).json()
    assert served == api.emu.state.records(inst["id"], "invoices")


def test_admin_http_routes(api: Api) -> None:
    base = api.emu.url + "/_emulator"
    assert requests.get(base + "/health").json()["status"] == "ok"
    inst = requests.post(base + "/instances", json={"element_key": "freshbooksv2", "name": "x"}).json()
    recs = requests.get(f"{base}/instances/{inst['id']}/records/payments").json()
    assert recs == api.emu.state.records(inst["id"], "payments")
    done = requests.post(
        base + "/activity",
        json={"instance_id": inst["id"], "resources": ["payments"], "creates": 1, "updates": 0, "deletes": 1},
    ).json()
    assert len(done["payments"]["created"]) == 1
    with_deleted = requests.get(
        f"{base}/instances/{inst['id']}/records/payments", params={"include_deleted": "true"}
    ).json()
    assert len(with_deleted) == 41
    stats = requests.get(base + "/stats").json()
    assert stats["requests"]["GET /elements/api-v2/hubs/{hub}/{resource}"] >= 1
    assert requests.post(base + "/activity", json={}).status_code == 400


def test_persistence_across_restart(tmp_path: Path) -> None:
    cfg = EmulatorConfig(data_dir=str(tmp_path), records_per_resource=25, bulk_min_seconds=0.05)
    with EmulatorServer(cfg) as emu:
        api = Api(emu)
        inst = api.post(
            "/instances",
            json={
                "element": {"key": "quickbooksonprem"},
                "name": "persist",
                "configuration": {"app.name": "a", "host.ip": "h"},
            },
        ).json()
        created = api.post("/hubs/finance/vendors", inst["token"], json={"Name": "Kept Vendor"}).json()
        job = api.post("/hubs/finance/bulk/query", inst["token"], params={"q": "select * from vendors"}).json()["id"]
        api.wait_bulk(inst["token"], job)
        truth = emu.state.records(inst["id"], "vendors")
    with EmulatorServer(cfg) as emu:
        api = Api(emu)
        assert api.get(f"/instances/{inst['id']}").json()["token"] == inst["token"]
        assert emu.state.records(inst["id"], "vendors") == truth
        got = api.get(f"/hubs/finance/vendors/{created['ListID']}", inst["token"]).json()
        assert got["Name"] == "Kept Vendor"
        lines = api.get(
            f"/hubs/finance/bulk/{job}/vendors", inst["token"], headers={"Accept": "application/json"}
        ).text.splitlines()
        assert [json.loads(x) for x in lines] == truth
        second = api.post(
            "/instances",
            json={
                "element": {"key": "quickbooksonprem"},
                "name": "n",
                "configuration": {"app.name": "a", "host.ip": "h"},
            },
        ).json()
        assert second["id"] > inst["id"]
    assert (tmp_path / "emulator.sqlite3").exists()


def test_temp_data_dir_removed() -> None:
    with EmulatorServer(EmulatorConfig()) as emu:
        data_dir = emu.state.data_dir
        assert os.path.isdir(data_dir)
    assert not os.path.exists(data_dir)


def test_cli_help_documents_every_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cloudelements_emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from cloudelements_emulator.config import DEFAULT_USER_SECRET, FaultConfig

    for flag in [
        "--host",
        "--port",
        "--port-file",
        "--seed",
        "--records",
        "--records-for",
        "--data-dir",
        "--user-secret",
        "--organization-secret",
        "--bulk-done-status",
        "--bulk-min-seconds",
        "--poller-interval-seconds",
        "--simulate-activity-every",
    ] + ["--" + f.replace("_", "-") for f in FaultConfig.field_names()]:
        assert flag in out, flag
    assert DEFAULT_USER_SECRET not in out


def test_cli_serves_and_simulates(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudelements_emulator",
            "--port-file",
            str(port_file),
            "--records",
            "5",
            "--records-for",
            "invoices=7",
            "--simulate-activity-every",
            "0.2",
            "--burst-429",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("Cloud Elements emulator listening on http://127.0.0.1:")
        port = int(port_file.read_text())
        assert line.strip().endswith(f":{port}/elements/api-v2")
        base = f"http://127.0.0.1:{port}"
        inst = requests.post(base + "/_emulator/instances", json={"element_key": "quickbooks"}).json()
        assert len(requests.get(f"{base}/_emulator/instances/{inst['id']}/records/invoices").json()) == 7
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(requests.get(f"{base}/_emulator/instances/{inst['id']}/records/invoices").json()) > 7:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("activity simulation did not run")
        headers = {"Authorization": f"User {'x' * 20}, Element {inst['token']}"}
        assert requests.get(base + "/elements/api-v2/elements").status_code == 429  # --burst-429 1
        assert requests.get(base + "/elements/api-v2/hubs/finance/invoices", headers=headers).status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    from cloudelements_emulator.config import (
        DEFAULT_ORGANIZATION_SECRET,
        DEFAULT_USER_SECRET,
    )

    assert DEFAULT_USER_SECRET not in out + err and DEFAULT_ORGANIZATION_SECRET not in out + err


def test_emulator_does_not_import_airflow() -> None:
    code = (
        "import sys; from cloudelements_emulator import EmulatorServer, EmulatorConfig; "
        "import cloudelements_emulator.cli; "
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')], "
        "'airflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
