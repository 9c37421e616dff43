"""Property test: hub CEQL filtering equals a Python filter over the ground truth (reference §3.4)."""

from __future__ import annotations

import operator

from cloudelements_emulator import timefmt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Api

_OPS = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_YEAR = 365 * 86_400_000
_ANCHOR = 1767225600000


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.sampled_from(sorted(_OPS)),
    amount=st.floats(min_value=0, max_value=20000, allow_nan=False).map(lambda x: round(x, 2)),
    date_op=st.sampled_from([">=", "<"]),
    offset=st.integers(min_value=0, max_value=_YEAR),
    element=st.sampled_from(["quickbooks", "quickbooksonprem", "freshbooksv2"]),
)
def test_where_matches_python(api: Api, op: str, amount: float, date_op: str, offset: int, element: str) -> None:
    inst = _instances(api)[element]
    pivot_ms = _ANCHOR - offset
    if element == "quickbooks":
        amount_field, date_field, literal = (
            "totalAmt",
            "`metaData.lastUpdatedTime`",
            timefmt.iso_utc(pivot_ms),
        )

        def values(r: dict) -> tuple[float, int]:
            return r["totalAmt"], r["metaData"]["lastUpdatedTime"]
    elif element == "quickbooksonprem":
        amount_field, date_field, literal = (
            "TotalAmount",
            "TimeModified",
            timefmt.render(pivot_ms, "iso_offset"),
        )

        def values(r: dict) -> tuple[float, int]:
            return float(r["TotalAmount"]), timefmt.parse_instant(r["TimeModified"]) or 0
    else:
        amount_field, date_field, literal = "amount", "updated", timefmt.date_str(pivot_ms)

        def values(r: dict) -> tuple[float, int]:
            return r["amount"], timefmt.parse_instant(r["updated"]) or 0

    pivot = timefmt.parse_instant(literal)
    where = f"{amount_field} {op} {amount} AND {date_field} {date_op} '{literal}'"
    truth = api.emu.state.records(inst["id"], "invoices")
    want = [r for r in truth if _OPS[op](values(r)[0], amount) and _OPS[date_op](values(r)[1], pivot)]
    got = api.get(
        "/hubs/finance/invoices",
        inst["token"],
        params={"where": where, "pageSize": 1000, "returnCount": "true"},
    )
    assert got.status_code == 200, got.text
    if element == "quickbooks":  # page cap 1000 is enough for 450; others page
        assert got.json() == want
    assert got.headers["Elements-Total-Count"] == str(len(want))


_CACHE: dict[int, dict[str, dict]] = {}


def _instances(api: Api) -> dict[str, dict]:
    key = id(api)
    if key not in _CACHE:
        _CACHE[key] = {k: api.instance(k) for k in ("quickbooks", "quickbooksonprem", "freshbooksv2")}
    return _CACHE[key]
