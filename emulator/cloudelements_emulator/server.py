"""Run the emulator app with uvicorn in a daemon thread on 127.0.0.1 (context manager)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from cloudelements_emulator.app import create_app
from cloudelements_emulator.config import EmulatorConfig
from cloudelements_emulator.state import EmulatorState

log = logging.getLogger(__name__)


class EmulatorServer:
    """``with EmulatorServer(cfg) as emu:`` — ready when ``__enter__`` returns.

    :ivar base_url: ``http://127.0.0.1:PORT/elements/api-v2``
    :ivar url: ``http://127.0.0.1:PORT``
    :ivar state: the in-process :class:`EmulatorState` (ground truth + admin).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._state: EmulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> EmulatorState:
        """The in-process state. :raises RuntimeError: before :meth:`start`."""
        if self._state is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._state

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/elements/api-v2"

    @property
    def user_secret(self) -> str:
        return self.config.user_secret

    @property
    def organization_secret(self) -> str:
        return self.config.organization_secret

    def start(self) -> EmulatorServer:
        """Bind, start serving and wait until uvicorn reports started.

        :raises RuntimeError: if the server does not start within ``startup_timeout`` seconds.
        """
        self._state = EmulatorState(self.config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self._state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            date_header=False,  # app.ServerDate sets the exact Date of each response
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="ce-emulator-uvicorn", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Cloud Elements emulator failed to start")
            time.sleep(0.01)
        log.info("Cloud Elements emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop uvicorn, background threads; remove a temporary data dir."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._state is not None:
            self._state.close()
            self._state = None
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
