"""Offline emulator of the Cloud Elements REST API (reference: ../shared/cloud-elements-api.md).

Standalone: imports only stdlib, fastapi/starlette, uvicorn, sqlglot, faker and pydantic (never
airflow)::

    from airflow_provider_cloudelements.emulator import EmulatorConfig, FaultConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=7)) as emu:
        emu.base_url  # http://127.0.0.1:PORT/elements/api-v2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cloudelements.emulator.config import EmulatorConfig, FaultConfig

if TYPE_CHECKING:
    from airflow_provider_cloudelements.emulator.server import EmulatorServer
    from airflow_provider_cloudelements.emulator.state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "FaultConfig"]


def __getattr__(name: str) -> Any:
    # lazy: importing the config must stay cheap (no fastapi/uvicorn import)
    if name == "EmulatorServer":
        from airflow_provider_cloudelements.emulator.server import EmulatorServer

        return EmulatorServer
    if name == "EmulatorState":
        from airflow_provider_cloudelements.emulator.state import EmulatorState

        return EmulatorState
    raise AttributeError(name)
