"""Offline emulator of the Cloud Elements REST API (API facts and public sources: docs/api-facts.md).

Its own distribution (``cloudelements-emulator``). Imports only stdlib, fastapi/starlette, uvicorn, sqlglot,
faker, pydantic and the provider's element catalog ``airflow_provider_cloudelements.catalog`` (never
airflow)::

    from cloudelements_emulator import EmulatorConfig, FaultConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=7)) as emu:
        emu.base_url  # http://127.0.0.1:PORT/elements/api-v2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudelements_emulator.config import EmulatorConfig, FaultConfig

if TYPE_CHECKING:
    from cloudelements_emulator.server import EmulatorServer
    from cloudelements_emulator.state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "FaultConfig"]


def __getattr__(name: str) -> Any:
    # lazy: importing the config must stay cheap (no fastapi/uvicorn import)
    if name == "EmulatorServer":
        from cloudelements_emulator.server import EmulatorServer

        return EmulatorServer
    if name == "EmulatorState":
        from cloudelements_emulator.state import EmulatorState

        return EmulatorState
    raise AttributeError(name)
