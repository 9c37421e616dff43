"""Fault injection (see :class:`~.config.FaultConfig`) as a pure ASGI middleware.

The middleware also assigns ``Elements-Request-Id`` to every response and counts requests per
route template for ``stats()``. Faults apply to Cloud Elements routes only (``/elements/api-v2``),
never to ``/_emulator`` admin routes.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import re
import threading
import time
from typing import Any

from starlette.responses import HTMLResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudelements_emulator.auth import parse_authorization
from cloudelements_emulator.config import FaultConfig
from cloudelements_emulator.errors import REQUEST_ID_HEADER, error_response, new_request_id
from cloudelements_emulator.stats import Stats

API_PREFIX = "/elements/api-v2"
_CONVERTOR = re.compile(r":\w+}")
INTUIT_THROTTLE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class FaultInjector:
    """Decides, per request, which fault (if any) to inject. Bursts are counters; rates use a seeded RNG."""

    def __init__(self, faults: FaultConfig, seed: int) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self.reset(faults)

    def reset(self, faults: FaultConfig | None = None) -> None:
        with self._lock:
            self.config = faults or FaultConfig()
            self._rng = random.Random(f"{self._seed}:faults")
            self._windows: dict[str, collections.deque[float]] = {}

    def update(self, **fields: Any) -> FaultConfig:
        """Apply partial changes. :raises ValueError: for unknown fields."""
        with self._lock:
            self.config = self.config.updated(**fields)
            return self.config

    def applies(self, path: str, method: str | None = None) -> bool:
        prefix = self.config.path_prefix
        if not path.startswith(API_PREFIX) or (prefix and not path.startswith(prefix)):
            return False
        methods = self.config.methods
        if methods and method is not None:
            return method.upper() in {m.strip().upper() for m in methods.split(",") if m.strip()}
        return True

    def _take(self, burst_field: str, rate: float) -> bool:
        burst = getattr(self.config, burst_field, 0)
        if burst > 0:
            self.config = self.config.updated(**{burst_field: burst - 1})
            return True
        return rate > 0 and self._rng.random() < rate

    def decide(self, path: str, auth_header: str | None, method: str | None = None) -> tuple[str | None, float]:
        """Return ``(fault kind or None, delay seconds)`` for one request."""
        if not self.applies(path, method):
            return None, 0.0
        with self._lock:
            c = self.config
            delay = c.slow_seconds if c.slow_seconds > 0 and self._take("burst_slow", c.rate_slow) else 0.0
            if c.rate_limit_per_minute is not None and self._over_limit(auth_header, c.rate_limit_per_minute):
                return "rate_limit", delay
            for kind, burst, rate in (
                ("429", "burst_429", c.rate_429),
                ("5xx", "burst_5xx", c.rate_5xx),
                ("throttle_500", "burst_throttle_500", c.rate_throttle_500),
                ("html_502", "burst_html_502", 0.0),
            ):
                if self._take(burst, rate):
                    return kind, delay
            return None, delay

    def take_slow_response(self, path: str, method: str | None) -> float:
        """Seconds to hold back the response of this (already processed) request; 0 for none.

        A positive answer consumes one of ``burst_slow_response``.
        """
        if not self.applies(path, method):
            return 0.0
        with self._lock:
            c = self.config
            if c.burst_slow_response <= 0 or c.slow_seconds <= 0:
                return 0.0
            self.config = c.updated(burst_slow_response=c.burst_slow_response - 1)
            return c.slow_seconds

    def take_download_drop(self, path: str) -> int | None:
        """Bytes after which this bulk download is cut off, or ``None`` for a complete download.

        Consumes one of ``drop_download_times`` when that counter is set.
        """
        if not self.applies(path, "GET"):
            return None
        with self._lock:
            c = self.config
            if c.drop_download_after_bytes is None:
                return None
            if c.drop_download_times is not None:
                if c.drop_download_times <= 0:
                    return None
                self.config = c.updated(drop_download_times=c.drop_download_times - 1)
            return c.drop_download_after_bytes

    def _over_limit(self, auth_header: str | None, limit: int) -> bool:
        parts = parse_authorization(auth_header)
        key = parts.get("element") or parts.get("user") or "anonymous"
        window = self._windows.setdefault(key, collections.deque())
        now = time.monotonic()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            self._limit_retry_after = 60.0 - (now - window[0])
            return True
        window.append(now)
        return False

    def retry_after_for(self, kind: str) -> str:
        if kind == "rate_limit":
            return str(max(1, math.ceil(getattr(self, "_limit_retry_after", 1.0))))
        seconds = self.config.retry_after_seconds
        return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def fault_response(injector: FaultInjector, kind: str, request_id: str) -> Any:
    """The HTTP response of an injected fault."""
    if kind in ("429", "rate_limit"):
        msg = (
            "Rate limit exceeded for this element token"
            if kind == "rate_limit"
            else "Too many requests, please retry later"
        )
        return error_response(
            429,
            msg,
            request_id,
            provider_message="Too Many Requests",
            headers={"Retry-After": injector.retry_after_for(kind)},
        )
    if kind == "5xx":
        status = injector.config.status_5xx
        return error_response(
            status,
            "The provider is temporarily unavailable",
            request_id,
            provider_message=f"Service Unavailable (HTTP {status}) from the provider",
        )
    if kind == "throttle_500":
        return error_response(
            500, "An error occurred calling the QuickBooks API", request_id, provider_message=INTUIT_THROTTLE
        )
    return HTMLResponse(NGINX_502, status_code=502, headers={REQUEST_ID_HEADER: request_id})


class EmulatorMiddleware:
    """Request id, per-route stats and fault injection."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, stats: Stats) -> None:
        self.app = app
        self.injector = injector
        self.stats = stats

    def _template(self, scope: Scope) -> str:
        router = scope["app"].router if "app" in scope else None
        for route in getattr(router, "routes", []):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = str(getattr(route, "path", scope["path"]))
                return f"{scope['method']} {_CONVERTOR.sub('}', template)}"
        return f"{scope['method']} {scope['path']}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope["ce_request_id"] = request_id
        path = scope["path"]
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        kind, delay = self.injector.decide(path, headers.get("authorization"), scope.get("method"))
        if delay:
            await asyncio.sleep(delay)
        if kind:
            self.stats.count_fault(kind)
            self.stats.count_request(self._template(scope))  # faulted requests count too
            await fault_response(self.injector, kind, request_id)(scope, receive, send)
            return

        hold = self.injector.take_slow_response(path, scope.get("method"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                if hold:
                    self.stats.count_fault("slow_response")
                    await asyncio.sleep(hold)  # the app has processed the request already
                raw = list(message.get("headers", []))
                if not any(k.lower() == b"elements-request-id" for k, _ in raw):
                    raw.append((b"elements-request-id", request_id.encode()))
                message["headers"] = raw
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.stats.count_request(self._template(scope))
