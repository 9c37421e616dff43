"""``CloudElementsCommonResourceOperator`` and the hook's definition/transformation methods against the
emulator over real HTTP: model apply (create, no-op rerun, drift detected and repaired, dry run), the
built-in finance model's reads compared with the emulator's raw records, writes through a common
resource, and bad models failing before any call."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cloudelements_emulator.qbo_ids import bare_id

from airflow_provider_cloudelements.common_model import finance_model, load_model, vendor_fields
from airflow_provider_cloudelements.common_model.unified import invoice_truth
from airflow_provider_cloudelements.exceptions import (
    CloudElementsConflictError,
    CloudElementsModelError,
    CloudElementsNotFoundError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.operators.common_resources import CloudElementsCommonResourceOperator
from tests.conftest import connection_json
from tests.operators.conftest import Ctx, set_connection

ELEMENTS = ("quickbooks", "quickbooksonprem", "freshbooksv2", "freshbooks")


@pytest.fixture
def conn(emu: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module emulator; a model apply makes a few hundred platform calls: lift the client-side
    request budget (500/min by default) so the tests do not wait on it."""
    return set_connection(monkeypatch, emu, retry_budget=3, max_requests_per_minute=100000)


@pytest.fixture
def clean(emu: Any, conn: str) -> Any:
    hook = CloudElementsHook(conn)
    yield hook
    for name in hook.list_definitions():
        hook.delete_definition(name)
    for key in ELEMENTS:
        for name in hook.list_transformations(key):
            hook.delete_transformation(name, key)


def _model_dict() -> dict[str, Any]:
    from importlib import resources

    return json.loads(
        resources.files("airflow_provider_cloudelements.common_model").joinpath("finance.json").read_text()
    )


def expected_invoice(element: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The common invoice the finance model promises, from the raw record (docs/common-model.md rules)
    plus ``updated_at`` from the element's own updated field."""
    from cloudelements_emulator.transform import iso, parse_date

    want = invoice_truth(element, raw)
    stamp = {"quickbooks": "metaData.lastUpdatedTime", "quickbooksonprem": "TimeModified"}.get(element, "updated")
    value = raw["metaData"]["lastUpdatedTime"] if element == "quickbooks" else raw[stamp]
    ms = parse_date(value, None)
    assert ms is not None
    return {**{k: v for k, v in want.items() if k != "active"}, "updated_at": iso(ms)}


def _project(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("customer_id", "total_amount", "balance", "status", "updated_at")
    # QBO serves ids as <id>|<syncToken> (mapped through unchanged); the truth names the stable id
    return {
        "id": bare_id(row.get("id")),
        **{k: row.get(k) for k in keys},
        "lines": [ln.get("amount") for ln in row.get("lines", [])],
    }


def test_apply_model_create_noop_drift_and_dry_run(emu: Any, clean: CloudElementsHook) -> None:
    hook = clean
    model = finance_model()
    n_defs = len(model.resources)
    n_trans = sum(len(r.mappings) for r in model.resources.values())
    first = CloudElementsCommonResourceOperator(task_id="apply").execute(Ctx().context)
    assert (first["created"], first["updated"], first["unchanged"]) == (n_defs + n_trans, 0, 0)
    assert set(hook.list_definitions()) == set(model.resources)
    stored = hook.get_transformation("common-invoices", "quickbooksonprem")
    assert stored is not None and stored["vendorName"] == "Invoice"
    assert stored["fields"] == model.resources["common-invoices"].transformation_body("quickbooksonprem")["fields"]
    again = CloudElementsCommonResourceOperator(task_id="apply").execute(Ctx().context)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, n_defs + n_trans)
    # drift: someone edits a mapping and deletes a definition in the console
    tampered = copy.deepcopy(stored)
    tampered["fields"][1]["vendorPath"] = "TxnNumber"
    hook.create_transformation("common-invoices", tampered, "quickbooksonprem", replace=True)
    hook.delete_definition("common-items")
    plan = CloudElementsCommonResourceOperator(task_id="apply", dry_run=True).execute(Ctx().context)
    assert (plan["created"], plan["updated"]) == (1, 1) and plan["dry_run"] is True
    drift = next(c for c in plan["changes"] if c["action"] == "update")
    assert (drift["kind"], drift["name"], drift["element"]) == ("transformation", "common-invoices", "quickbooksonprem")
    assert drift["details"] == ["~ number (vendorPath: 'TxnNumber' -> 'RefNumber')"]
    assert hook.get_definition("common-items") is None  # a dry run writes nothing
    assert hook.get_transformation("common-invoices", "quickbooksonprem")["fields"][1]["vendorPath"] == "TxnNumber"
    repaired = CloudElementsCommonResourceOperator(task_id="apply").execute(Ctx().context)
    assert (repaired["created"], repaired["updated"]) == (1, 1)
    assert hook.get_transformation("common-invoices", "quickbooksonprem")["fields"][1]["vendorPath"] == "RefNumber"
    final = CloudElementsCommonResourceOperator(task_id="apply").execute(Ctx().context)
    assert final["unchanged"] == n_defs + n_trans
    # an entry the model does not name is left alone
    hook.create_definition("mine", [{"path": "id", "type": "string"}])
    CloudElementsCommonResourceOperator(task_id="apply").execute(Ctx().context)
    assert hook.get_definition("mine") is not None


@pytest.mark.parametrize("element", ELEMENTS)
def test_finance_model_reads_match_raw_records(emu: Any, clean: CloudElementsHook, conn: str, element: str) -> None:
    CloudElementsCommonResourceOperator(task_id="apply", elements=[element]).execute(Ctx().context)
    inst = emu.state.create_instance(element, f"{element} common")
    raw = emu.state.records(inst["id"], "invoices")
    hook = CloudElementsHook(conn, instance_id=inst["id"])
    rows = list(hook.iter_records("common-invoices", page_size=17))
    assert [_project(r) for r in rows] == [expected_invoice(element, r) for r in raw]
    # CEQL on a common field, translated to the vendor field
    cut = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    later = list(hook.iter_records("common-invoices", where=f"updated_at >= '{cut}'"))
    assert [r["id"] for r in later] == [r["id"] for r in rows if r["updated_at"] >= cut]
    customers = list(hook.iter_records("common-customers"))
    assert len(customers) == len(emu.state.records(inst["id"], "customers"))
    assert all(isinstance(c["active"], bool) and c["updated_at"].endswith("Z") for c in customers)


def test_write_through_common_resource(emu: Any, clean: CloudElementsHook, conn: str) -> None:
    CloudElementsCommonResourceOperator(task_id="apply", common_resources=["common-customers"]).execute(Ctx().context)
    inst = emu.state.create_instance("quickbooks", "qbo writes")
    hook = CloudElementsHook(conn, instance_id=inst["id"])
    body = {"name": "Common Co", "email": "ap@common.test", "address": {"city": "Lyon", "postal_code": "69001"}}
    created = hook.create_record("common-customers", body)
    raw = next(r for r in emu.state.records(inst["id"], "customers") if bare_id(r["id"]) == bare_id(created["id"]))
    assert raw["displayName"] == "Common Co" and raw["primaryEmailAddr"] == {"address": "ap@common.test"}
    assert raw["billAddr"]["city"] == "Lyon" and raw["billAddr"]["postalCode"] == "69001"
    assert created["address"] == {"city": "Lyon", "postal_code": "69001"} and "displayName" not in created
    updated = hook.update_record("common-customers", created["id"], {"phone": "555-0100"})
    assert updated["phone"] == "555-0100" and updated["name"] == "Common Co"
    raw = next(r for r in emu.state.records(inst["id"], "customers") if bare_id(r["id"]) == bare_id(created["id"]))
    assert raw["primaryPhone"] == {"freeFormNumber": "555-0100"}


def test_hook_levels_404_and_409(emu: Any, clean: CloudElementsHook) -> None:
    hook = clean
    inst = emu.state.create_instance("quickbooksonprem", "levels")
    fields = [{"path": "id", "type": "string"}]
    trans = {"vendorName": "Customer", "fields": [{"path": "id", "vendorPath": "ListID"}]}
    for level, scope in (("organization", None), ("account", None), ("account", 1), ("instance", inst["id"])):
        key = None if level == "instance" else "quickbooksonprem"
        assert hook.create_definition("lvl", fields, level, scope)["level"] == level
        with pytest.raises(CloudElementsConflictError):
            hook.create_definition("lvl", fields, level, scope)
        assert hook.create_transformation("lvl", trans, key, level, scope)["level"] == level
        with pytest.raises(CloudElementsConflictError):
            hook.create_transformation("lvl", trans, key, level, scope)
        assert "lvl" in hook.list_definitions(level, scope) and "lvl" in hook.list_transformations(key, level, scope)
        hook.delete_transformation("lvl", key, level, scope)
        hook.delete_definition("lvl", level, scope)
        assert hook.get_definition("lvl", level, scope) is None
        assert hook.get_transformation("lvl", key, level, scope) is None
        with pytest.raises(CloudElementsNotFoundError):
            hook.delete_definition("lvl", level, scope)
    with pytest.raises(CloudElementsNotFoundError):
        hook.list_definitions("account", 987)


def _mutate(fn: Any) -> dict[str, Any]:
    data = _model_dict()
    fn(data["resources"])
    return data


def _set(path: tuple[str, ...], key: str, value: Any) -> Any:
    def mutate(resources: dict[str, Any]) -> None:
        target = resources
        for part in path:
            target = target[part]
        target[key] = value

    return mutate


def _append_field(resources: dict[str, Any]) -> None:
    resources["common-vendors"]["fields"].append({"path": "email", "type": "string"})


CUS, INV = ("common-customers", "mappings"), ("common-invoices", "mappings", "quickbooksonprem", "fields")
STUB = {"fields": {"id": "id"}}
BAD_MODELS = [
    ("unknown element", _set(CUS, "sage", {"resource": "customers", **STUB}), "sage"),
    ("unknown vendor field", _set((*CUS, "quickbooks", "fields"), "name", "displayNam"), "displayNam"),
    ("unconvertible type", _set(INV, "total_amount", "IsPaid"), "total_amount"),
    ("duplicate field", _append_field, "email"),
    (
        "unknown vendor resource",
        _set(("common-bills", "mappings"), "freshbooksv2", {"resource": "bills", **STUB}),
        "bills",
    ),
    ("unmapped common field", _set(("common-items", "mappings", "quickbooks", "fields"), "colour", "type"), "colour"),
]


@pytest.mark.parametrize(("case", "mutation", "named"), BAD_MODELS, ids=[c for c, _, _ in BAD_MODELS])
def test_bad_models_fail_before_any_call(monkeypatch: pytest.MonkeyPatch, case: str, mutation: Any, named: str) -> None:
    # a connection nobody listens on: any call would fail with a connection error instead
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT", connection_json("http://127.0.0.1:9/elements/api-v2", "u", "o")
    )
    op = CloudElementsCommonResourceOperator(task_id="apply", model=_mutate(mutation))
    with pytest.raises(CloudElementsModelError) as err:
        op.execute(Ctx().context)
    assert named in str(err.value) and named in (err.value.field, err.value.element)


def test_vendor_field_catalog_covers_the_emulator_objects(emu: Any) -> None:
    """The shipped vendor field catalog names every field the emulator serves (guard against drift)."""
    from cloudelements_emulator.elements import ELEMENTS as EMULATED

    catalog = vendor_fields()
    for key, element in EMULATED.items():
        inst = emu.state.create_instance(key, "catalog")
        for resource in ("customers", "invoices"):
            for record in emu.state.records(inst["id"], resource)[:10]:
                for path in _paths(record):
                    assert path in catalog[key][resource], (key, resource, path)
        assert set(catalog[key]) == set(element.resources)


def _paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [prefix] + [p for item in value if isinstance(item, (dict, list)) for p in _paths(item, prefix + "[*]")]
    return [prefix]


def test_load_model_round_trip() -> None:
    model = load_model(_model_dict())
    assert model.version == finance_model().version == "1.0.0"
    body = model.resources["common-payments"].transformation_body("quickbooksonprem")
    assert body["vendorName"] == "ReceivePayment"
    assert {"path": "applied_to[*].invoice_id", "vendorPath": "AppliedToTxnRet[*].TxnID", "type": "string"} in body[
        "fields"
    ]


def test_docs_list_every_field_of_the_finance_model() -> None:
    """docs/common-model.md documents every field (path, type) of every common resource."""
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "common-model.md").read_text()
    for name, resource in finance_model().resources.items():
        assert f"### `{name}`" in text
        for f in resource.fields:
            assert f"| `{f.path}` | {f.type} |" in text, (name, f.path)


@pytest.mark.parametrize("deferrable", [False, True])
def test_bulk_extract_of_a_common_resource(
    emu: Any, clean: CloudElementsHook, conn: str, out: Any, deferrable: bool
) -> None:
    """``select * from common-invoices`` through the bulk extract operator (sync and deferred): the
    landed NDJSON holds the mapped invoices of every record of the instance."""
    from datetime import datetime, timezone

    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
    from tests.operators.conftest import run_operator

    CloudElementsCommonResourceOperator(task_id="apply", common_resources=["common-invoices"]).execute(Ctx().context)
    inst = emu.state.create_instance("quickbooksonprem", "bulk common")
    op = CloudElementsBulkExtractOperator(
        task_id="extract",
        instance_id=inst["id"],
        resource="common-invoices",
        full_refresh=True,
        deferrable=deferrable,
        poll_interval=0.2,
    )
    manifest = run_operator(op, Ctx(data_interval_end=datetime.now(timezone.utc)))
    text = Path(manifest["path"].removeprefix("file://")).read_text()
    landed = [json.loads(line) for line in text.splitlines() if line]
    raw = emu.state.records(inst["id"], "invoices")
    assert manifest["resource"] == "common-invoices" and manifest["records"] == len(raw)
    assert sorted(map(_project, landed), key=lambda r: r["id"]) == sorted(
        (expected_invoice("quickbooksonprem", r) for r in raw), key=lambda r: r["id"]
    )


def test_resource_checks_accept_common_names_the_element_maps() -> None:
    from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
    from airflow_provider_cloudelements.utils.elements import check_resource

    check_resource("quickbooks", "common-bills")
    check_resource("freshbooks", "common-invoices")
    with pytest.raises(CloudElementsConfigError, match="common-bills"):
        check_resource("freshbooksv2", "common-bills")  # FreshBooks has no bills: fails before any call
    with pytest.raises(CloudElementsConfigError, match="common-nope"):
        check_resource("quickbooks", "common-nope")


def test_apply_at_instance_level_wins_over_organization(emu: Any, clean: CloudElementsHook, conn: str) -> None:
    """``level="instance"``: definitions and transformations on the named instance only; the most
    specific level wins over an organization-level mapping; a rerun changes nothing."""
    inst = emu.state.create_instance("quickbooksonprem", "instance level")
    other = emu.state.create_instance("quickbooksonprem", "organization level")
    hook = CloudElementsHook(conn)
    CloudElementsCommonResourceOperator(task_id="org", common_resources=["common-customers"]).execute(Ctx().context)
    model = _model_dict()
    model["resources"]["common-customers"]["mappings"]["quickbooksonprem"]["fields"]["name"] = "LastName"
    op = CloudElementsCommonResourceOperator(
        task_id="inst",
        model=model,
        level="instance",
        instance_ids={"quickbooksonprem": inst["id"]},
        common_resources=["common-customers"],
    )
    first = op.execute(Ctx().context)
    assert (first["created"], first["updated"]) == (2, 0)  # one definition + one transformation
    assert {c["scope"] for c in first["changes"]} == {inst["id"]}
    assert op.execute(Ctx().context)["unchanged"] == 2
    stored = hook.get_transformation("common-customers", None, "instance", inst["id"])
    assert stored is not None and stored["level"] == "instance"
    mine = list(CloudElementsHook(conn, instance_id=inst["id"]).iter_records("common-customers"))
    theirs = list(CloudElementsHook(conn, instance_id=other["id"]).iter_records("common-customers"))
    assert [r["name"] for r in mine] == [r["LastName"] for r in emu.state.records(inst["id"], "customers")]
    assert [r["name"] for r in theirs] == [r["FullName"] for r in emu.state.records(other["id"], "customers")]
    hook.delete_transformation("common-customers", None, "instance", inst["id"])
