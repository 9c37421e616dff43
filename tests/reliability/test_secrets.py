"""No credential ever leaves the provider.

The example DAGs run with ``dag.test()`` against the suite's emulator (``cloudelements_finance_sync``
for all three elements, then ``cloudelements_provision_instances``). Then every place a secret could
surface is scanned for the user secret, the organization secret, every element token the emulator
issued, the OAuth app secret and the webhook signature key:

task log files under ``AIRFLOW_HOME/logs``, captured stdout/stderr and log records, every XCom row,
every rendered-template row, every ``trigger`` row, ``serialize()`` of every trigger class (and of
the triggers the deferring operators/sensors build), and the texts of errors raised on the error
paths (401, 403, 404, proxy pages echoing the ``Authorization`` header, refused connections,
``test_connection`` messages, hook/settings reprs).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cloudelements.exceptions import CloudElementsError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.sensors.bulk import CloudElementsBulkJobSensor
from airflow_provider_cloudelements.sensors.events import CloudElementsEventSensor
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.triggers.events import CloudElementsEventTrigger
from tests.conftest import ROOT, connection_json
from tests.hooks.conftest import Resp, ScriptedServer
from tests.reliability.conftest import REPORT, count_secrets, make_context

pytestmark = pytest.mark.timeout(150)

OAUTH_APP_SECRET = "oauth-app-secret-Zq9y8X7w6V5u4T3s"
SIGNATURE_KEY = "webhook-signing-key-Kp2o3I4u5Y6t7R8e"


def _load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.e2e.conftest import forget_runs

    forget_runs(dag_id)
    bag = DagBag(dag_folder=str(ROOT / "dags_examples" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def _db_texts() -> dict[str, str]:
    """Every XCom value, rendered template field set and trigger row (raw and decrypted kwargs)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import text

    out: dict[str, str] = {}
    with create_session() as session:
        for i, row in enumerate(session.execute(text("select dag_id, task_id, map_index, key, value from xcom"))):
            out[f"xcom[{i}] {row[0]}.{row[1]}[{row[2]}] {row[3]}"] = str(row[4])
        for i, row in enumerate(
            session.execute(
                text("select dag_id, task_id, map_index, rendered_fields from rendered_task_instance_fields")
            )
        ):
            out[f"rtif[{i}] {row[0]}.{row[1]}[{row[2]}]"] = str(row[3])
        for i, row in enumerate(session.execute(text("select * from trigger"))):
            out[f"trigger-row[{i}]"] = str(tuple(row))
        for trig in session.query(Trigger).all():
            out[f"trigger-kw[{trig.id}] {trig.classpath}"] = json.dumps(trig.kwargs, default=str)
    return out


def _trigger_serializations(conn_id: str, iid: int, tmp: Path) -> dict[str, str]:
    out = {}
    triggers = [
        CloudElementsBulkJobTrigger(
            job_id="17", instance_id=iid, cloudelements_conn_id=conn_id, poll_interval=5, end_time=2e9
        ),
        CloudElementsEventTrigger(
            instance_id=iid,
            cloudelements_conn_id=conn_id,
            object_types=["invoices"],
            event_types=["CREATED"],
            since="2026-01-01T00:00:00Z",
            end_time=2e9,
        ),
        CloudElementsEventTrigger(instance_id=iid, cloudelements_conn_id=conn_id, watch=True),
    ]
    deferring = [
        CloudElementsBulkExtractOperator(
            task_id="x",
            resource="invoices",
            instance_id=iid,
            cloudelements_conn_id=conn_id,
            output_base=f"file://{tmp}",
            full_refresh=True,
            deferrable=True,
        ),
        CloudElementsEventSensor(
            task_id="s", instance_id=iid, cloudelements_conn_id=conn_id, deferrable=True, object_types=["invoices"]
        ),
    ]
    for op in deferring:
        try:
            op.execute(make_context())
        except TaskDeferred as deferred:
            triggers.append(deferred.trigger)
        except CloudElementsError:
            pass
    try:
        job = CloudElementsHook(conn_id, instance_id=iid).start_bulk_query("vendors")
        CloudElementsBulkJobSensor(
            task_id="b", job_id=job, instance_id=iid, cloudelements_conn_id=conn_id, deferrable=True
        ).execute(make_context())
    except TaskDeferred as deferred:
        triggers.append(deferred.trigger)
    except (CloudElementsError, TypeError):  # a finished job does not defer; a signature change is not ours
        pass
    for i, trig in enumerate(triggers):
        classpath, kwargs = trig.serialize()
        out[f"serialize[{i}] {classpath}"] = json.dumps(kwargs, default=str) + repr(trig)
    return out


def _error_texts(remu: Any, conn_id: str, iid: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Texts of errors raised while secrets are in play."""
    texts: dict[str, str] = {}

    def grab(name: str, fn: Any) -> None:
        try:
            fn()
        except Exception as err:  # every error text is scanned, typed or not
            texts[name] = " | ".join(
                [str(err), repr(err), str(err.args), str(getattr(err, "provider_message", "")), str(err.__cause__)]
            )
        else:
            texts[name] = "(no error)"

    hook = CloudElementsHook(conn_id, instance_id=iid)
    token = hook._hub_token()  # the instance token, now cached (and masked) on the hook
    texts["hook repr"] = repr(hook) + repr(hook.settings) + repr(hook.session.auth)
    grab("404 record", lambda: hook.get_record("invoices", "no-such-id"))
    grab("404 job", lambda: hook.get_bulk_status("987654"))
    grab("400 bad CEQL", lambda: list(hook.iter_records("invoices", where="noSuchField = 'x'")))
    bad = json.loads(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
    bad["extra"]["user_secret"] = remu.user_secret[::-1]
    monkeypatch.setenv("AIRFLOW_CONN_CE_SECRETS_BAD", json.dumps(bad))
    grab("401 platform", lambda: CloudElementsHook("ce_secrets_bad").find_instances())
    grab("401 hub", lambda: CloudElementsHook("ce_secrets_bad", element_token=token).ping())
    texts["test_connection 401"] = str(CloudElementsHook("ce_secrets_bad", instance_id=iid).test_connection())
    texts["test_connection ok"] = str(CloudElementsHook(conn_id, instance_id=iid).test_connection())

    # a proxy that echoes the request (incl. the Authorization header) in its error pages
    server = ScriptedServer().start()
    try:

        def echo(status: int, html: bool = False) -> Any:
            def handler(req: Any) -> Resp:
                auth = req.headers.get("Authorization", "")
                if html:
                    return Resp(
                        status,
                        f"<html><body><pre>{auth}</pre> bad gateway</body></html>",
                        {"Content-Type": "text/html"},
                    )
                return Resp(status, {"message": f"denied for {auth}", "providerMessage": auth, "requestId": "r1"})

            return handler

        echo_conn = {**bad, "host": server.base_url}
        echo_conn["extra"] = {
            **bad["extra"],
            "user_secret": remu.user_secret,
            "element_token": token,
            "retry_budget": 0.3,
        }
        monkeypatch.setenv("AIRFLOW_CONN_CE_ECHO", json.dumps(echo_conn))
        for status, html in [(400, False), (401, False), (403, True), (502, True), (500, False)]:
            server.handler = echo(status, html)
            grab(f"echo {status}", lambda: CloudElementsHook("ce_echo").ping())
        server.handler = lambda req: Resp(200, f"not json {req.headers.get('Authorization')}")
        grab("echo 200 non-JSON", lambda: CloudElementsHook("ce_echo").ping())
    finally:
        server.stop()

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = {**echo_conn, "host": f"http://127.0.0.1:{port}/elements/api-v2"}
    monkeypatch.setenv("AIRFLOW_CONN_CE_REFUSED", json.dumps(refused))
    grab("connection refused", lambda: CloudElementsHook("ce_refused").ping())
    return texts


def test_no_secret_anywhere(
    remu: Any,
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
        connection_json(remu.base_url, remu.user_secret, remu.organization_secret, retry_budget=20),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")})
    )
    for key in ("quickbooks", "quickbooksonprem", "freshbooksv2"):
        extra = {"oauth.api.key": f"{key}-client-id", "oauth.api.secret": OAUTH_APP_SECRET}
        if key == "quickbooks":
            extra["event.notification.signature.key"] = SIGNATURE_KEY
        monkeypatch.setenv(
            f"AIRFLOW_CONN_CLOUDELEMENTS_{key.upper()}_APP", json.dumps({"conn_type": "generic", "extra": extra})
        )
    monkeypatch.setenv("CLOUDELEMENTS_OUTPUT_BASE", f"file://{tmp_path / 'landing'}")
    monkeypatch.setenv("CLOUDELEMENTS_POLL_INTERVAL", "0.1")
    monkeypatch.setenv("CLOUDELEMENTS_SYNC_ELEMENTS", "quickbooks,quickbooksonprem,freshbooksv2")

    caplog.set_level(logging.DEBUG)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for dag_id in ("cloudelements_finance_sync", "cloudelements_provision_instances"):
        run = _load_dag(dag_id).test(logical_date=now)
        assert run.state == "success", f"{dag_id} ended {run.state}"

    places: dict[str, str] = {}
    qbo = next(
        i
        for i in remu.state.instances.all()
        if i["element"]["key"] == "quickbooks" and i.get("configuration", {}).get("event.notification.signature.key")
    )
    assert qbo["configuration"]["event.notification.signature.key"] == SIGNATURE_KEY, "key never reached CE"
    places.update(_db_texts())
    places.update(_trigger_serializations("cloudelements_default", int(qbo["id"]), tmp_path / "t"))
    places.update(_error_texts(remu, "cloudelements_default", int(qbo["id"]), monkeypatch))
    # every file under AIRFLOW_HOME: task logs (dag.test() runs tasks in-process and logs to
    # stdout, so logs/ may be empty) and the raw bytes of the metadata database itself
    for path in sorted(Path(airflow_db).rglob("*")):
        if path.is_file():
            places[f"file {path.relative_to(airflow_db)}"] = path.read_bytes().decode("latin-1")
    for path in sorted((tmp_path / "landing").rglob("_manifest.json")):
        places[f"manifest {path.relative_to(tmp_path)}"] = path.read_text()
    captured = capfd.readouterr()
    places["stdout"], places["stderr"] = captured.out, captured.err
    places["log records"] = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )

    tokens = [i["token"] for i in remu.state.instances.all()] + sorted(remu.state.instances._deleted_tokens)
    secrets = [remu.user_secret, remu.organization_secret, OAUTH_APP_SECRET, SIGNATURE_KEY, *tokens]
    assert len(tokens) >= 4 and all(len(s) > 5 for s in secrets)
    assert places["stdout"] + places["log records"], "nothing was captured: the scan would be vacuous"
    assert any(k.startswith("xcom[") for k in places) and any(k.startswith("rtif[") for k in places)

    assert len(places["log records"]) > 2000, "the task logs were not captured"
    assert count_secrets(f"Authorization: User {quote(secrets[0], safe='')}", secrets), "the scanner is blind"
    scanned_chars = sum(len(t) for t in places.values())
    leaks = {name: found for name, text in places.items() if (found := count_secrets(text, secrets))}
    REPORT["secrets"].append(
        (
            f"{len(places)} places scanned",
            f"{len(secrets)} secrets ({len(tokens)} element tokens)",
            f"{sum(sum(v.values()) for v in leaks.values())} occurrences",
            f"{scanned_chars} chars",
        )
    )
    for kind in ("xcom", "rtif", "trigger-", "serialize", "file", "echo", "401", "404", "manifest", "std"):
        REPORT["secrets"].append((f"  {kind}", f"{sum(1 for k in places if kind in k)} places", "", ""))
    assert leaks == {}, f"secrets found in: {leaks}"
