"""Deployment checks: on the first failing test, attach the tail of every Airflow process log (secrets
redacted) to its report, so the failure output shows what the scheduler/triggerer/... were doing."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.deployment.airflow_stack import AirflowDeployment

DEPLOYMENT_KEY = pytest.StashKey["AirflowDeployment"]()
_REPORTED_KEY = pytest.StashKey[bool]()


def register_deployment(config: pytest.Config, stack: AirflowDeployment) -> None:
    config.stash[DEPLOYMENT_KEY] = stack
    config.stash[_REPORTED_KEY] = False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, Any]:
    report = yield
    stack = item.config.stash.get(DEPLOYMENT_KEY, None)
    if report.failed and stack is not None and not item.config.stash.get(_REPORTED_KEY, False):
        item.config.stash[_REPORTED_KEY] = True
        try:
            report.sections.append((f"Airflow deployment logs (AIRFLOW_HOME {stack.home})", stack.log_tails()))
        except Exception as err:  # diagnosis must never mask the real failure
            report.sections.append(("Airflow deployment logs", f"could not read the logs: {err!r}"))
    return report
