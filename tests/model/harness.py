"""Ground truth, sync runs and invariant checks of the model-based test (see ``test_model.py``).

:class:`Harness` owns one "world": three element instances (QuickBooks Online, QuickBooks Enterprise,
FreshBooks) on the shared emulator, one landing folder and one SQLite warehouse. Every change it makes
to the emulator goes through the ``/_emulator`` admin routes over HTTP and is appended to
:attr:`Stream.history` with the server's exact change time, so the test knows every version each
record ever had. Sync runs go through ``dag.test()`` of ``dags/ce_model_dags.py``; every completed
load is followed by :meth:`Harness.check`, which compares the warehouse with that history
(invariants a-e, defined in ``test_model.py``'s docstring) and appends :class:`Violation` s.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import table_name
from airflow_provider_cloudelements.transfers.storage_to_sql.rows import canonical_json
from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_id
from tests.model import support

MODEL_DAGS = Path(__file__).resolve().parent / "dags"
ELEMENTS: dict[str, dict[str, Any]] = {
    "quickbooks": {"note": "privateNote"},
    "quickbooksonprem": {"note": "Memo"},
    "freshbooksv2": {"note": "notes"},
}
RESOURCES = ("customers", "invoices")
LIVE, SOFT, HARD = "live", "soft", "hard"


def now_ms() -> int:
    """The emulator's clock (same process, same ``time.time_ns``)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Version:
    """One state of a record at the emulator: ``state`` live/soft (soft-deleted, still served)/hard."""

    t_ms: int
    state: str
    data: str | None  # canonical JSON (as the loader stores it); None for a hard delete


@dataclass
class Evidence:
    """The newest version of one record a successful load delivered, and which load it was."""

    index: int
    source: str
    mode: str = "bulk"  # of the extract that delivered it


@dataclass
class Extract:
    """One finished extract run: its manifest plus what the harness knows about the snapshot."""

    n: int
    stream: Stream
    manifest: dict[str, Any]
    t_pre_ms: int  # taken just before the run started: every version at or before it existed
    complete: bool  # full refresh, 0 failed records, no user filter: may prove absence
    lines: list[str]  # canonical JSON of every record line, as landed
    tombstones: list[dict[str, Any]]
    failed_ids: set[str]
    label: str
    loaded: int = 0


@dataclass
class Violation:
    kind: str
    stream: str
    record: str
    detail: str
    step: int = 0
    seconds: float = 0.0
    defect: str = "?"  # the issue-11 defect it most likely shows (a heuristic, see Harness._suspect)
    trace: tuple[str, ...] = ()  # the world's last actions before it (Harness.trace), to replay it

    def __str__(self) -> str:
        return f"[{self.kind} {self.defect}] {self.stream} id={self.record}: {self.detail}"


@dataclass
class Stream:
    element_key: str
    resource: str
    instance_id: int
    history: dict[str, list[Version]] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    last_activity_ms: int = 0
    runs: set[int] = field(default_factory=set)  # interval numbers run at least once
    dead: dict[int, dict[str, Any]] = field(default_factory=dict)  # interval -> sync kwargs of a died run
    catchup_ms: int = -1  # newest t_pre of a loaded complete snapshot

    @property
    def name(self) -> str:
        return f"{self.element_key}/{self.resource}"

    @property
    def dag_id(self) -> str:
        return f"ce_model_{self.element_key}_{self.resource}"

    @property
    def table(self) -> str:
        return table_name("ce_", self.element_key, self.resource)

    def ids(self, state: str | None = None) -> list[str]:
        """Record ids (creation order) whose current state is ``state`` (any when None)."""
        return [rid for rid, h in self.history.items() if state is None or h[-1].state == state]


def _index_of(history: list[Version], data: str) -> int | None:
    for i in range(len(history) - 1, -1, -1):
        if history[i].data == data:
            return i
    return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


class Harness:
    """One world of the model (see the module docstring).

    :param emulator: the running :class:`~cloudelements_emulator.EmulatorServer`.
    :param workdir: a fresh folder for the landing zone and the warehouse.
    :param dags: ``{dag_id: DAG}`` parsed from ``dags/ce_model_dags.py``.
    :param interval_s: the stream DAGs' schedule (seconds).
    """

    def __init__(self, emulator: Any, workdir: Path, dags: dict[str, Any], interval_s: float = 1.0) -> None:
        self.emulator = emulator
        self.http = httpx.Client(base_url=emulator.url, timeout=30)
        self.dags = dags
        self.interval = interval_s
        self.landing = workdir / "landing"
        self.warehouse = workdir / "warehouse.db"
        os.environ["CLOUDELEMENTS_OUTPUT_BASE"] = f"file://{self.landing}"
        os.environ["AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE"] = json.dumps(
            {"conn_type": "sqlite", "host": str(self.warehouse)}
        )
        self.violations: list[Violation] = []
        self.notes: dict[str, int] = {}
        self.extracts: list[Extract] = []
        self.step = 0  # the driver keeps it current (global step number)
        self.started = time.monotonic()  # the driver may move it back (soak start)
        self.last_load: Extract | None = None
        self.trace: list[str] = []  # one line per emulator change, extract and load (server ms times)
        self._died_t_pre: dict[tuple[str, int], int] = {}
        self.streams: dict[str, Stream] = {}
        for key in ELEMENTS:
            inst = self._admin("POST", "/instances", json={"element_key": key, "name": f"model {key}"})
            for resource in RESOURCES:
                stream = Stream(key, resource, int(inst["id"]))
                for rec in self._admin("GET", f"/instances/{inst['id']}/records/{resource}"):
                    state = SOFT if is_soft_deleted(rec, key) else LIVE
                    stream.history[record_id(rec, key)] = [Version(0, state, canonical_json(rec))]
                self.streams[stream.name] = stream
        for stream in self.streams.values():
            forget_runs(stream.dag_id)
        forget_runs("ce_model_load")
        # interval k covers [t0 + (k-1) I, t0 + k I); interval 1 has ended already
        self.t0 = datetime.fromtimestamp(int(time.time() - 2 * interval_s), timezone.utc)

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ emulator activity
    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/_emulator{path}", **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def _apply(self, stream: Stream, result: dict[str, Any]) -> str:
        """Append the change result of an admin route to the record's history; returns its id."""
        rec = result["record"]
        rid = record_id(rec, stream.element_key)
        if result["deleted"]:
            version = Version(int(result["changed_ms"]), HARD, None)
        else:
            state = SOFT if is_soft_deleted(rec, stream.element_key) else LIVE
            version = Version(int(result["changed_ms"]), state, canonical_json(rec))
        stream.history.setdefault(rid, []).append(version)
        stream.last_activity_ms = max(stream.last_activity_ms, version.t_ms)
        self.log(f"{version.t_ms} {stream.name} id={rid} -> {version.state} (version {len(stream.history[rid]) - 1})")
        return rid

    def _path(self, stream: Stream, rid: str = "") -> str:
        base = f"/instances/{stream.instance_id}/records/{stream.resource}"
        return f"{base}/{rid}" if rid else base

    def create(self, stream: Stream) -> str:
        return self._apply(stream, self._admin("POST", self._path(stream), json={}))

    def update(self, stream: Stream, rid: str, text: str) -> str:
        note = ELEMENTS[stream.element_key]["note"]
        return self._apply(stream, self._admin("PATCH", self._path(stream, rid), json={"fields": {note: text}}))

    def delete(self, stream: Stream, rid: str, hard: bool) -> str:
        return self._apply(stream, self._admin("DELETE", self._path(stream, rid), params={"hard": hard}))

    def restore(self, stream: Stream, rid: str) -> str:
        return self._apply(stream, self._admin("POST", self._path(stream, rid) + "/restore"))

    def touch(self, stream: Stream, pick: int, text: str) -> str | None:
        """Update the ``pick``-th live (not soft-deleted) record, if any (activity during extracts)."""
        live = stream.ids(LIVE)
        return self.update(stream, live[pick % len(live)], text) if live else None

    # ------------------------------------------------------------------ runs
    def interval_now(self) -> int:
        """The newest interval that has ended."""
        return max(1, int((time.time() - self.t0.timestamp()) // self.interval))

    def logical_date(self, k: int) -> datetime:
        return self.t0 + timedelta(seconds=k * self.interval)

    def extract(
        self,
        stream: Stream,
        k: int,
        *,
        mode: str = "bulk",
        deferrable: bool = True,
        full_refresh: bool | str = "auto",
        failed: int = 0,
        die: str = "",
        during: Callable[[], None] | None = None,
        window: tuple[str, str] | None = None,
        label: str = "",
        retry: bool = False,
    ) -> Extract | None:
        """One ``dag.test()`` of the stream DAG for interval ``k``; ``None`` when the run failed.

        ``failed`` > 0 injects that many failed records into bulk jobs (``max_failed_records`` is set
        to it, so the run must succeed). ``die`` plays a worker death (the run fails; :attr:`Stream.dead`
        remembers it for :meth:`retry_dead`). ``during`` runs after the bulk job finished, before the
        download. ``retry`` runs the next try of the DAG run's task instead of a fresh run (see
        :meth:`retry_dead`). ``window`` is an explicit ``(start, end)`` (ISO) instead of the data interval.
        """
        plan = support.RunPlan(
            instance_id=stream.instance_id,
            deferrable=deferrable,
            full_refresh=full_refresh,
            max_failed_records=failed,
            die=die,
            before_download=during,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
        )
        support.reset(plan)
        if failed:
            self._admin("PUT", "/faults", json={"bulk_failed_records": failed})
        t_pre = now_ms()
        try:
            if retry:
                next_try(self.dags[stream.dag_id], self.logical_date(k), mode)
            else:
                self.dags[stream.dag_id].test(
                    logical_date=self.logical_date(k),
                    run_after=self.logical_date(k),
                    mark_success_pattern="paged" if mode == "bulk" else "bulk",
                )
        finally:
            if failed:
                self._admin("DELETE", "/faults")
        stream.runs.add(k)
        if retry:  # the re-attached job's snapshot is as old as the first try
            t_pre = self._died_t_pre.pop((stream.name, k), t_pre)
        error = support.ERRORS.get(mode)
        if die:
            if isinstance(error, support.WorkerDied):
                stream.dead[k] = {
                    "mode": mode,
                    "deferrable": deferrable,
                    "full_refresh": full_refresh,
                    "failed": failed,
                }
                self._died_t_pre[(stream.name, k)] = t_pre
                return None
            if error is not None:
                self.violate("extract-failed", stream, "-", f"{label}: {type(error).__name__}: {error}")
                return None
        elif error is not None:
            self.violate("extract-failed", stream, "-", f"{label}: {type(error).__name__}: {error}")
            return None
        manifest = support.RESULTS.get(mode)
        if not isinstance(manifest, dict):
            self.violate("extract-failed", stream, "-", f"{label}: no manifest (result {manifest!r})")
            return None
        lines, tombstones = self._read_files(manifest)
        failed_ids = self._failed_ids(manifest)
        ex = Extract(
            n=len(self.extracts) + 1,
            stream=stream,
            manifest=manifest,
            t_pre_ms=t_pre,
            complete=_complete(manifest),
            lines=lines,
            tombstones=tombstones,
            failed_ids=failed_ids,
            label=label or f"{mode} k={k} full={full_refresh}",
        )
        self.extracts.append(ex)
        self.log(
            f"{t_pre} extract #{ex.n} {stream.name} {ex.label}: {len(lines)} lines, {len(tombstones)} tombstones, "
            f"snapshot_at={manifest.get('snapshot_at')} complete={ex.complete} "
            f"ids={sorted(_rid(stream, x) for x in lines)}"
        )
        for line in lines:
            if self._version_of_line(stream, line) is None:
                self.violate("extract-phantom", stream, _rid(stream, line), f"{ex.label}: content never served")
        return ex

    def retry_dead(self, stream: Stream, k: int) -> Extract | None:
        """The next try of a died task in the SAME DAG run (its task state store still holds the job id,
        so it re-attaches). ``dag.test()`` would delete and recreate the run (and its task state), so
        this runs the task instance's next try with ``dag.test``'s own in-process runner instead."""
        kwargs = stream.dead.pop(k)
        return self.extract(stream, k, label=f"retry k={k} {kwargs}", retry=True, **kwargs)

    def mark_failed(self, stream: Stream, k: int) -> bool:
        """Mark the successful DAG run of interval ``k`` failed (as a user does in the UI); ``"auto"``
        runs after it no longer count it as the previous success. Returns whether there was one."""
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from sqlalchemy import select

        with create_session() as session:
            run = session.scalar(
                select(DagRun).where(DagRun.dag_id == stream.dag_id, DagRun.logical_date == self.logical_date(k))
            )
            if run is None or run.state != DagRunState.SUCCESS:
                return False
            run.state = DagRunState.FAILED
        self.log(f"{now_ms()} {stream.name} run k={k} marked failed")
        return True

    def _read_files(self, manifest: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        def read(uri: str | None) -> list[Any]:
            if not uri:
                return []
            path = Path(uri.removeprefix("file://"))
            if not path.exists():
                return []
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

        return [canonical_json(r) for r in read(manifest.get("path"))], read(manifest.get("deleted_path"))

    def _failed_ids(self, manifest: dict[str, Any]) -> set[str]:
        errors = manifest.get("errors_path")
        if not errors or not Path(errors.removeprefix("file://")).exists():
            return set()
        out = set()
        for line in Path(errors.removeprefix("file://")).read_text().splitlines():
            if line.strip():
                out.add(str(json.loads(line).get("recordId")))
        return out

    def _version_of_line(self, stream: Stream, line: str) -> int | None:
        rid = _rid(stream, line)
        history = stream.history.get(rid)
        return None if history is None else _index_of(history, line)

    # ------------------------------------------------------------------ loads
    def load(self, ex: Extract) -> bool:
        """Load one extract's manifest with ``dag.test()`` of ``ce_model_load``, then check the stream.

        A reload (the extract was loaded before) must leave the table byte-identical (invariant e).
        Returns whether the load succeeded.
        """
        stream = ex.stream
        lines, tombstones = self._read_files(ex.manifest)
        before = self.table_rows(stream)
        support.reset(support.RunPlan(manifests=[ex.manifest]))
        self.dags["ce_model_load"].test(logical_date=datetime.now(timezone.utc))
        error = support.ERRORS.get("load")
        after = self.table_rows(stream)
        if error is not None:
            if after != before:
                self.violate("load-not-atomic", stream, "-", f"load of {ex.label} failed and changed the table")
            if not type(error).__module__.startswith("airflow_provider_cloudelements"):
                self.violate("load-untyped-error", stream, "-", f"{ex.label}: {type(error).__name__}: {error}")
            else:
                self.note(f"load refused: {type(error).__name__}")
            return False
        if ex.loaded and after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            self.violate("reload-changed", stream, ",".join(changed[:5]), f"reloading {ex.label} changed rows")
        ex.loaded += 1
        self.last_load = ex
        self.log(f"{now_ms()} load #{ex.n} ({ex.label}), load {ex.loaded}")
        if lines != ex.lines or tombstones != ex.tombstones:
            self.violate(
                "wrong-file",
                stream,
                "-",
                f"loaded {ex.label}, but its files now hold another extract's records "
                f"({len(ex.lines)} landed, {len(lines)} loaded)",
            )
        self._add_evidence(ex, lines, tombstones, intact=lines == ex.lines)
        self.check(stream)
        return True

    def _add_evidence(self, ex: Extract, lines: list[str], tombstones: list[dict[str, Any]], intact: bool) -> None:
        stream = ex.stream

        def offer(rid: str, index: int, source: str) -> None:
            have = stream.evidence.get(rid)
            if have is None or index > have.index:
                stream.evidence[rid] = Evidence(index, f"{source} of {ex.label}", str(ex.manifest.get("mode")))

        for line in lines:
            rid = _rid(stream, line)
            index = self._version_of_line(stream, line)
            if index is not None:
                offer(rid, index, "record line")
        for tomb in tombstones:
            rid = str(tomb.get("id"))
            at = _ms(tomb.get("deleted_at"))
            history = stream.history.get(rid, [])
            hits = [i for i, v in enumerate(history) if v.state != LIVE and at is not None and v.t_ms <= at]
            if hits:
                offer(rid, hits[-1], "tombstone")
        if ex.complete and intact:
            bound = self._snapshot_bound(ex)
            in_file = {_rid(stream, line) for line in lines}
            for rid, history in stream.history.items():
                at_pre = [v for v in history if v.t_ms <= ex.t_pre_ms]  # t_pre is read after the last change
                if rid not in in_file and at_pre and at_pre[-1].state != HARD:
                    # nothing changes between t_pre and the snapshot (paged: no activity while paging;
                    # bulk: ``during`` runs after the job finished), so the record was served then
                    self.violate("snapshot-missing", stream, rid, f"{ex.label}: complete, lacks a served record")
                covered = [i for i, v in enumerate(history) if v.t_ms < bound]
                if not covered:
                    continue
                if rid not in in_file and history[covered[-1]].state != HARD:
                    # live at the bound, hard-deleted between the bound and t_pre: the snapshot delivered
                    # that deletion, not the older live version (which would demand a row)
                    continue
                offer(rid, covered[-1], f"complete snapshot (bound={_iso(bound)})")
            stream.catchup_ms = max(stream.catchup_ms, bound)

    def _snapshot_bound(self, ex: Extract) -> int:
        """The instant (server ms) as of which a complete snapshot proves the state of every record.

        docs/reliability.md "Semantics": ``snapshot_at`` is a lower bound of when the snapshot was
        observed (a paged extract's is the floored ``Date`` of its first page), so the proof holds as of
        min(t_pre, snapshot_at), not as of t_pre. And K = max(u, s) orders a version against a snapshot
        only to the resolution of its times: with whole-second updated times (QBE ``TimeModified``,
        FreshBooks ``updated``) and a version observed by a paged extract (floored ``snapshot_at``), a
        change in the snapshot's own second cannot be ordered before or after it (the loader keeps such
        a version until the next complete snapshot: ``transfers.storage_to_sql.ordering.absence_proves``),
        so for those elements the proof starts at that second.
        """
        bound = min(ex.t_pre_ms, _ms(ex.manifest.get("snapshot_at")) or ex.t_pre_ms)
        if ex.stream.element_key in WHOLE_SECOND:
            bound -= bound % 1000
        return bound

    # ------------------------------------------------------------------ invariants
    def table_rows(self, stream: Stream) -> dict[str, tuple[Any, ...]]:
        """``{record_id: (updated_at, is_deleted, data, synced_at)}`` of the stream's instance."""
        if not self.warehouse.exists():
            return {}
        with sqlite3.connect(self.warehouse) as conn:
            try:
                rows = conn.execute(
                    f'SELECT record_id, updated_at, is_deleted, data, synced_at FROM "{stream.table}" '
                    "WHERE instance_id = ?",
                    (stream.instance_id,),
                ).fetchall()
            except sqlite3.OperationalError:
                return {}
        return {r[0]: tuple(r[1:]) for r in rows}

    def check(self, stream: Stream) -> None:
        """Invariants (a)-(d) of ``test_model.py`` for one stream; appends violations."""
        rows = self.table_rows(stream)
        for rid in rows.keys() - stream.history.keys():
            self.violate("unknown-id", stream, rid, "warehouse row for an id the emulator never had")
        for rid, history in stream.history.items():
            ev = stream.evidence.get(rid)
            row = rows.get(rid)
            if row is None:
                if ev is not None and history[ev.index].state == LIVE:
                    self.violate("dropped", stream, rid, f"no row, but {ev.source} delivered it live")
                continue
            _, is_deleted, data, _ = row
            if is_deleted and (data or "") in CONTENTLESS:
                self._check_contentless(stream, rid, history, ev)
                continue
            p = _index_of(history, data)
            if p is None:
                self.violate("phantom-content", stream, rid, "row content is no version the emulator had")
                continue
            if not is_deleted:
                if history[p].state != LIVE:
                    self.violate("flag-mismatch", stream, rid, "live row holding soft-deleted content")
                if ev is not None and ev.index > p:
                    between = [history[j].state for j in range(p + 1, ev.index + 1)]
                    kind = "resurrected" if any(s != LIVE for s in between) else "regressed"
                    if kind == "regressed" and self._tie_allowed(stream, history[p], history[ev.index], ev):
                        self.note("same-second tie kept the stored version (versionless element)")
                        continue
                    self.violate(kind, stream, rid, f"row holds version {p}, {ev.source} delivered version {ev.index}")
                continue
            claim = (
                p
                if history[p].state != LIVE
                else next((j for j in range(p + 1, len(history)) if history[j].state != LIVE), None)
            )
            if claim is None:
                self.violate(
                    "false-delete", stream, rid, f"marked deleted, but no deletion after version {p} ({_why(history)})"
                )
                continue
            if ev is not None and ev.index > claim and history[ev.index].state == LIVE:
                self.violate(
                    "stale-delete",
                    stream,
                    rid,
                    f"deleted at version {claim}, but {ev.source} delivered newer live version {ev.index}",
                )
        if stream.catchup_ms > stream.last_activity_ms:
            live = {rid: h[-1].data for rid, h in stream.history.items() if h[-1].state == LIVE}
            have = {rid: r[2] for rid, r in rows.items() if not r[1]}
            if live != have:
                diff = sorted(set(live.items()) ^ set(have.items()))
                self.violate(
                    "catch-up-mismatch", stream, ",".join(sorted({d[0] for d in diff})[:5]), "live rows differ"
                )

    def _tie_allowed(self, stream: Stream, stored: Version, newer: Version, ev: Evidence) -> bool:
        """CONTRACT: without a version field, two versions in one updated second are ordered by the
        snapshot time, which paged extracts take from the ``Date`` header (whole seconds): a tie there
        keeps what is stored. Bulk snapshot times (the job's ``createdDate``) have milliseconds."""
        if stream.element_key not in VERSIONLESS or stored.t_ms // 1000 != newer.t_ms // 1000:
            return False
        if ev.mode == "paged":
            return True
        return any(
            ex.loaded and ex.stream is stream and ex.manifest.get("mode") == "paged" and stored.data in ex.lines
            for ex in self.extracts
        )

    def _check_contentless(self, stream: Stream, rid: str, history: list[Version], ev: Evidence | None) -> None:
        """(a)/(b) for a deletion row without content: some deletion happened, and no live version
        newer than the newest deletion was delivered."""
        deletions = [i for i, v in enumerate(history) if v.state != LIVE]
        if not deletions:
            self.violate(
                "false-delete", stream, rid, f"deletion row, but the record was never deleted ({_why(history)})"
            )
        elif ev is not None and ev.index > deletions[-1] and history[ev.index].state == LIVE:
            self.violate(
                "stale-delete", stream, rid, f"deletion row, but {ev.source} delivered live version {ev.index}"
            )

    def ground_truth_agrees(self, stream: Stream) -> bool:
        """The harness's history ends in exactly the emulator's current records (a self-check)."""
        served = self._admin("GET", f"/instances/{stream.instance_id}/records/{stream.resource}")
        mine = {rid: h[-1].data for rid, h in stream.history.items() if h[-1].state != HARD}
        return mine == {record_id(r, stream.element_key): canonical_json(r) for r in served}

    def violate(self, kind: str, stream: Stream, rid: str, detail: str) -> None:
        if any((v.kind, v.stream, v.record) == (kind, stream.name, rid) for v in self.violations):
            return  # a wrong row stays wrong: report it once per world
        defect = self._suspect(kind, stream, rid)
        if self.last_load is not None:
            detail += f" [after loading {self.last_load.label}]"
        self.violations.append(
            Violation(
                kind,
                stream.name,
                rid,
                detail,
                self.step,
                round(time.monotonic() - self.started, 2),
                defect,
                tuple(self.trace[-40:]),
            )
        )

    def _suspect(self, kind: str, stream: Stream, rid: str) -> str:
        """Which issue-11 defect a violation most likely shows, from the last load and the record's
        history (for the soak's per-defect counts; the regression tests are the proof)."""
        ex, history = self.last_load, stream.history.get(rid, [])
        if kind == "wrong-file":
            return "#12/#5"
        if kind in ("resurrected", "reload-changed"):
            return "#15"
        if kind == "stale-delete":
            return "#4/#15"
        if kind == "catch-up-mismatch":
            return "(d), follows from the others"
        if ex is None or kind not in ("false-delete", "dropped", "regressed"):
            return "?"
        if rid in ex.failed_ids:
            return "#3"
        if ex.label.startswith("retry") and "'full_refresh': 'auto'" in ex.label:
            return "#1"  # the retry recomputed an "auto" window
        if any(str(t.get("id")) == rid for t in ex.tombstones):
            return "#4"
        end = _ms((ex.manifest.get("window") or {}).get("end"))
        if ex.manifest.get("full_refresh") and end is not None:
            if any(end <= v.t_ms <= ex.t_pre_ms for v in history):
                return "#2"
        if kind == "regressed" and len(history) > 1 and history[-1].t_ms // 1000 == history[-2].t_ms // 1000:
            return "#6"
        return "#15" if kind == "regressed" else "?"

    def log(self, line: str) -> None:
        self.trace.append(line)

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1


def _complete(manifest: dict[str, Any]) -> bool:
    """The manifest's own ``complete`` (manifest v2), else: a full refresh with 0 failed records."""
    if "complete" in manifest:
        return bool(manifest["complete"])
    return bool(manifest.get("full_refresh")) and not int(manifest.get("failed_records") or 0)


#: Elements whose updated times have whole-second resolution (the emulator's QBE ``TimeModified`` and
#: FreshBooks ``updated``, like the real APIs); QBO ``metaData.lastUpdatedTime`` is epoch milliseconds.
WHOLE_SECOND = frozenset({"quickbooksonprem", "freshbooksv2", "freshbooks"})
#: ``data`` of a deletion stored for an id whose content the loader never had (a "tombstone row").
CONTENTLESS = frozenset({"null", "{}", ""})
#: Elements without a version field: two versions in one updated second may tie (CONTRACT: a full tie
#: keeps what is stored), so the newer one winning is not demanded there.
VERSIONLESS = frozenset({"freshbooksv2", "freshbooks"})


def _rid(stream: Stream, line: str) -> str:
    return record_id(json.loads(line), stream.element_key)


def _ms(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _why(history: list[Version]) -> str:
    return " -> ".join(v.state for v in history)


def next_try(dag: Any, logical_date: datetime, task_id: str) -> None:
    """Run the next try of ``task_id`` in the existing DAG run of ``logical_date`` (what a scheduler
    does for a retry: same run, new try number), in process like ``dag.test()`` does."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date))
        assert run is not None, f"no run of {dag.dag_id} at {logical_date}"
        ti = run.get_task_instance(task_id, session=session)
        assert ti is not None
        ti.prepare_db_for_next_try(session)
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        run.state = DagRunState.RUNNING
        session.merge(ti)
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date))
        ti = run.get_task_instance(task_id, session=session)
        session.expunge(ti)
    _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == logical_date))
        run.dag = _scheduler_dag(dag)
        run.update_state(session=session)


def _scheduler_dag(dag: Any) -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def forget_runs(dag_id: str) -> None:
    """Delete a DAG's runs, task instances and task state so its next run is its first one."""
    from airflow.models.dagrun import DagRun
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(TaskStateStoreModel).where(TaskStateStoreModel.dag_id == dag_id))
        session.execute(delete(TaskInstance).where(TaskInstance.dag_id == dag_id))
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id))
