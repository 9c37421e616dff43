"""A real, multi-process Airflow 3 deployment in a temp folder, for the deployment checks.

``airflow db migrate``, then ``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as
separate subprocesses (LocalExecutor on SQLite, like ``airflow standalone``; or the CeleryExecutor with a
Redis broker and ``celery_workers`` separate ``airflow celery worker`` processes), each logging to its own
file. Readiness is polled (``/api/v2/monitor/health``), never slept. Every process is started in its
own session (process group) so :meth:`AirflowDeployment.stop` can end it *and* its children (API
server workers, LocalExecutor workers, task supervisors) by group id: SIGTERM, then SIGKILL after a
grace period.

The REST API is used with a real login: the SimpleAuthManager password file is pre-written with a
random admin password and a JWT is requested from ``/auth/token``.

Secrets (JWT secret, Fernet key, the admin password and whatever the caller passes in ``secrets``)
are never printed: log tails are redacted before they are shown.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
CELERY = "CeleryExecutor"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the API server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_command() -> list[str]:
    """The ``airflow`` CLI of the interpreter running the tests (the project venv)."""
    script = Path(sys.executable).with_name("airflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "airflow"]


class DeploymentError(AssertionError):
    """The deployment did not reach the expected state before its deadline."""


@dataclass
class AirflowDeployment:
    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    #: ``LocalExecutor`` or ``CeleryExecutor`` (then ``celery_broker_url`` is required).
    executor: str = "LocalExecutor"
    celery_broker_url: str | None = None
    celery_workers: int = 2
    celery_concurrency: int = 2

    def __post_init__(self) -> None:
        if self.executor == CELERY and not self.celery_broker_url:
            raise ValueError("the CeleryExecutor needs celery_broker_url")
        if self.celery_broker_url:
            self.secrets = [*self.secrets, self.celery_broker_url]
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs = self.home / "process-logs"
        self.logs.mkdir(exist_ok=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._password = secrets.token_urlsafe(18)
        jwt_secret = secrets.token_hex(32)
        fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        api_secret = secrets.token_hex(16)
        self.secrets = [*self.secrets, self._password, jwt_secret, fernet_key, api_secret]
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": self._password}))
        # Nothing of the calling process's Airflow setup (tests/conftest.py points AIRFLOW_HOME at
        # the unit-test home and turns on unit_test_mode) may leak into the deployment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CLOUDELEMENTS_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # What `airflow standalone` forces: a local executor flavour on SQLite (default).
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                # New DAGs stay paused: the test unpauses only the DAG under test, so no other example
                # DAG (or its AssetWatcher) runs. No scheduled runs either: only the triggered one.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": api_secret,
                "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # Fast loops: this is a test deployment on a small shared machine.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
            }
        )
        if self.executor == CELERY:
            assert self.celery_broker_url
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.celery_broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": self.celery_broker_url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery_concurrency),
                }
            )
        env.update(self.extra_env)
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self._client = httpx.Client(base_url=self.base_url, timeout=15.0)

    # -- processes ----------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 180.0) -> str:
        """Run one ``airflow`` CLI command to completion; its output goes to a log file."""
        log = self.logs / f"cli-{'-'.join(a for a in args if not a.startswith('-'))[:60]}.log"
        with log.open("wb") as out:
            proc = subprocess.run(
                [*airflow_command(), *args],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        text = log.read_text(errors="replace")
        if proc.returncode:
            raise DeploymentError(f"`airflow {' '.join(args)}` exited {proc.returncode}:\n{self.redact(text[-4000:])}")
        return text

    @property
    def components(self) -> tuple[str, ...]:
        """The long-running processes of this deployment (Celery adds ``celery-worker-<n>``)."""
        workers = tuple(f"celery-worker-{n}" for n in range(1, self.celery_workers + 1))
        return COMPONENTS + workers if self.executor == CELERY else COMPONENTS

    def _command(self, name: str) -> list[str]:
        # The scheduler, triggerer and workers would also serve their logs over HTTP on fixed ports bound
        # to every interface (8793/8794); everything runs on this host, so read files instead.
        if name.startswith("celery-worker-"):
            return [
                "celery",
                "worker",
                "--celery-hostname",
                f"ce-{name}@%h",
                "--concurrency",
                str(self.celery_concurrency),
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ]
        return [name, "--skip-serve-logs"] if name in ("scheduler", "triggerer") else [name]

    def start(self, *components: str) -> None:
        for name in components or self.components:
            out = (self.logs / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                [*airflow_command(), *self._command(name)],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: stop() ends the children too
            )
            out.close()

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise DeploymentError(f"Airflow component(s) exited early: {dead}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every process group we started, then SIGKILL what is left after ``grace``."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            # The leader may be gone while children of its group live on: kill the group regardless.
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._client.close()

    # -- REST API -----------------------------------------------------------------------------------

    def _login(self) -> str:
        resp = self._client.post("/auth/token", json={"username": "admin", "password": self._password})
        if resp.status_code not in (200, 201):
            raise DeploymentError(f"Login to the API server failed: HTTP {resp.status_code}")
        return str(resp.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._token is None:
            self._token = self._login()
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        return self._client.request(method, path, headers=headers, **kwargs)

    def api_json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.api(method, path, **kwargs)
        if resp.status_code >= 400:
            raise DeploymentError(f"{method} {path}: HTTP {resp.status_code}: {self.redact(resp.text[:2000])}")
        return resp.json()

    # -- waiting ------------------------------------------------------------------------------------

    def wait_for(self, what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 0.5) -> Any:
        """Call ``probe`` until it returns something truthy; fail at the deadline or if a component dies."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            self.check_alive()
            try:
                result = probe()
            except (httpx.HTTPError, DeploymentError, KeyError, ValueError) as err:
                last_error, result = err, None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise DeploymentError(f"Timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")
            time.sleep(interval)

    def health(self) -> dict[str, Any]:
        resp = self._client.get("/api/v2/monitor/health")
        resp.raise_for_status()
        return dict(resp.json())

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        """Metadata DB, scheduler, triggerer and DAG processor all report healthy through the API."""

        def probe() -> dict[str, Any] | None:
            status = self.health()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ok = all((status.get(p) or {}).get("status") == "healthy" for p in parts)
            return status if ok else None

        return self.wait_for("every component to report healthy on /api/v2/monitor/health", probe, timeout=timeout)

    def trigger_run(self, dag_id: str, run_prefix: str, *, timeout: float = 150.0) -> str:
        """Wait until ``dag_id`` is serialized, unpause it, trigger a run for now; return the run's API path."""
        from datetime import datetime, timezone
        from urllib.parse import quote

        self.wait_for(
            f"the dag-processor to serialize {dag_id}",
            lambda: self.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200,
            timeout=timeout,
        )
        self.api_json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        logical = datetime.now(timezone.utc).replace(microsecond=0)
        run_id = self.api_json(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": f"{run_prefix}__{logical:%Y%m%dT%H%M%S}", "logical_date": logical.isoformat()},
        )["dag_run_id"]
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    # -- diagnosis ----------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        for value in self.secrets:
            if value:
                text = text.replace(value, "***")
        return text

    def log_tails(self, lines: int = 60) -> str:
        chunks = []
        for path in sorted(self.logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"===== {path.name} (last {len(tail)} lines) =====\n" + "\n".join(tail))
        return self.redact("\n".join(chunks))

    def all_log_files(self) -> Iterable[Path]:
        yield from self.logs.glob("*.log")
        yield from (self.home / "logs").rglob("*.log") if (self.home / "logs").exists() else ()

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # pgid == pid: started with start_new_session=True
    except (ProcessLookupError, PermissionError):
        pass
