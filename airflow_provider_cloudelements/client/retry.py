"""The one retry policy of the provider, shared by the sync and async hooks (both on httpx).

Classify, then back off (reference §6.3):

* **retried**: connection errors, connect/read timeouts, an attempt past its total deadline
  (:class:`AttemptDeadlineError`), a body cut off mid-stream, HTTP 429, 502, 503, 504, and a 500 whose
  ``message``/``providerMessage`` says the provider throttled us (``ThrottleExceeded`` / ``003001``);
* **a plain HTTP 500** on a ``GET`` (a page, a status poll, a download: reads that change nothing) is
  retried at most :data:`DEFAULT_MAX_SERVER_ERROR_RETRIES` (3) times inside the time budget, since one
  transient 500 should not fail a whole extract while a persistent one should surface quickly; a 500
  on any other verb is raised at once;
* **never retried**: 400, 401, 403, 404, 409 and every other status: they do not heal;
* **non-idempotent calls** (``POST``: create instance, create record, submit/upload a bulk job) are
  retried only when the request certainly was not processed: a failure to *connect*, a 429 or a
  throttled 500. A read timeout or 502/503/504 after a POST may hide a created object, so it is
  raised instead of risking a duplicate job or record;
* **wait**: what ``Retry-After`` says (seconds or HTTP-date) capped at :attr:`RetryPolicy.max_retry_after`,
  else jittered exponential backoff; a ``Retry-After`` of 0, a negative number or a date in the past
  carries no usable hint and also gets the backoff (obeying it retried ~110 times in 5 s);
* **stop**: on a total *time* budget (``retry_budget`` seconds, default 300), not on an attempt count:
  a wait that would end after the budget is not started;
* **fail fast on a host that never answered**: a refused connection or a failed DNS lookup
  (:func:`unreachable_cause`) to a host that has not answered once in this process
  (:func:`host_has_answered`) is retried only for :data:`DEFAULT_UNREACHABLE_BUDGET` seconds, so a
  wrong Base URL fails in seconds on a task's first call instead of spending the whole budget; once
  the host has answered, the same errors mid-run are transient and keep the full budget;
* **deadline**: every attempt also has a *total* deadline (:func:`attempt_deadline`), so a server
  trickling one byte every half second cannot hold a call past its read timeout and budget (a
  per-read socket timeout never fires while bytes keep arriving).

The predicate (:func:`is_retryable_exception`, and :func:`retry_predicate` for one logical call) and
the wait (:func:`compute_wait`, with :func:`parse_retry_after` for the header) are pure functions, tested
on their own; :meth:`RetryPolicy.retrying` / :meth:`RetryPolicy.async_retrying` wrap them in tenacity.
Transport errors are httpx's (the only HTTP library of the provider). No Airflow import.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import tenacity

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses that never heal by waiting (reference §6.2).
NON_RETRYABLE_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 409, 415})

DEFAULT_RETRY_BUDGET = 300.0  # seconds: long enough for a QBO 1-minute throttle window several times over
DEFAULT_MAX_RETRY_AFTER = 60.0  # seconds: QBO throttles per minute; a larger hint is capped, not obeyed blindly
DEFAULT_INITIAL_BACKOFF = 1.0  # seconds, first wait without Retry-After
DEFAULT_MAX_BACKOFF = 30.0  # seconds, ceiling of the exponential backoff
DEFAULT_MULTIPLIER = 2.0
#: Retries of a plain HTTP 500 on a GET (4 attempts in all): a transient 500 heals, a persistent one is a bug.
DEFAULT_MAX_SERVER_ERROR_RETRIES = 3

RETRY_AFTER_ATTR = "retry_after"  # attribute set on API exceptions by the hooks
#: Seconds a refused connection / failed DNS lookup is retried while the host has never answered in this
#: process: enough for a resolver or load-balancer blip (3 attempts), far below the 300 s budget that made
#: a wrong host cost ~15 min with the example DAG's retries.
DEFAULT_UNREACHABLE_BUDGET = 5.0

_ANSWERED: set[str] = set()  # "scheme://host:port" of every host that sent an HTTP response in this process
_ANSWERED_LOCK = threading.Lock()
_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED})
_UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH})
_DNS_MARKERS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated with hostname",
    "failed to resolve",
    "getaddrinfo failed",
)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL (lower case), the key of the answered-hosts registry."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0].lower()}" if rest else url.lower()


def note_host_answered(url: str) -> None:
    """Record that the host of ``url`` sent an HTTP response (any status) in this process."""
    with _ANSWERED_LOCK:
        _ANSWERED.add(_origin(url))


def host_has_answered(url: str) -> bool:
    """Whether the host of ``url`` sent an HTTP response in this process (:func:`note_host_answered`)."""
    with _ANSWERED_LOCK:
        return _origin(url) in _ANSWERED


def forget_answered_hosts() -> None:
    """Empty the answered-hosts registry (tests)."""
    with _ANSWERED_LOCK:
        _ANSWERED.clear()


def unreachable_cause(exc: BaseException | None) -> str | None:
    """Say why the host could not be reached at all, or ``None``.

    Returns ``"connection refused"``, ``"DNS lookup failed"`` or ``"host unreachable"`` when ``exc`` (a
    httpx transport error, searched through its causes, contexts, ``args`` and ``reason``) says so;
    ``None`` for anything else (timeouts, resets, HTTP errors).
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc] if exc is not None else []
    texts: list[str] = []
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) in _REFUSED_ERRNOS:
            return "connection refused"
        if getattr(cur, "errno", None) in _UNREACHABLE_ERRNOS:
            return "host unreachable"
        texts.append(str(cur).lower())
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__, *getattr(cur, "args", ())):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    text = " ".join(texts)
    if any(marker in text for marker in _DNS_MARKERS):
        return "DNS lookup failed"
    if "connection refused" in text or "[errno 111]" in text:
        return "connection refused"
    return None


def is_retryable_status(status_code: int | None, *, throttled: bool = False, idempotent: bool = True) -> bool:
    """Whether an HTTP error status is worth retrying.

    :param status_code: HTTP status of the response.
    :param throttled: the body says the provider throttled us (500 + ``ThrottleExceeded``/``003001``).
    :param idempotent: ``False`` for POST: then only 429 and throttled 500s are retried (the request was
        rejected before it did anything).
    """
    if status_code is None or status_code in NON_RETRYABLE_STATUSES:
        return False
    if status_code == 429 or (status_code == 500 and throttled):
        return True
    return idempotent and status_code in RETRYABLE_STATUSES


def _is_connect_phase(exc: BaseException) -> bool:
    """Whether a transport error happened before the request could reach the server.

    That is: no connection (``ConnectError``/``ConnectTimeout``) or none free in the pool (``PoolTimeout``).
    """
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a network-level failure (no usable HTTP response).

    That covers connection refused/reset, timeouts, a body cut off mid-stream (any
    :class:`httpx.TransportError`) and an attempt past its deadline.
    """
    return isinstance(exc, (httpx.TransportError, TruncatedDownloadError, AttemptDeadlineError))


def is_plain_server_error(exc: BaseException) -> bool:
    """An HTTP 500 that is not a throttle (``ThrottleExceeded``/``003001`` is a 429 in disguise)."""
    return (
        isinstance(exc, CloudElementsServerError)
        and not isinstance(exc, CloudElementsThrottledError)
        and exc.status_code == 500
    )


def is_retryable_exception(exc: BaseException, *, idempotent: bool = True, retry_server_error: bool = False) -> bool:
    """The retry predicate: ``True`` when ``exc`` is worth another attempt.

    :param exc: what the attempt raised (an httpx transport error or a
        :class:`~airflow_provider_cloudelements.exceptions.CloudElementsApiError`).
    :param idempotent: ``False`` for POST calls (see the module docstring).
    :param retry_server_error: retry a plain HTTP 500 (``GET`` calls only; the caller bounds how often).
    """
    if isinstance(exc, CloudElementsApiError):
        throttled = isinstance(exc, CloudElementsThrottledError)
        if not isinstance(exc, (CloudElementsThrottledError, CloudElementsServerError)):
            return False
        if is_plain_server_error(exc):
            return retry_server_error
        return is_retryable_status(exc.status_code, throttled=throttled, idempotent=idempotent)
    if is_transport_error(exc):
        return idempotent or _is_connect_phase(exc)
    return False


class AttemptDeadlineError(Exception):
    """One attempt passed its total deadline (:func:`attempt_deadline`) while the server was still answering.

    For example a server trickling bytes. Raised inside an attempt so the retry loop treats it like a read
    timeout; never escapes the hooks (converted to
    :class:`~airflow_provider_cloudelements.exceptions.CloudElementsConnectionError`).
    """


def attempt_deadline(now: float, *, call_deadline: float | None, connect_timeout: float, read_timeout: float) -> float:
    """Monotonic instant by which one attempt (connect, send, headers and the whole body) must be done.

    :param now: monotonic seconds when the attempt starts (after any client-side budget wait).
    :param call_deadline: end of the logical call (:func:`call_deadline`), or ``None`` for no limit.
    :param connect_timeout: seconds allowed to connect.
    :param read_timeout: seconds allowed for the whole response once connected.
    :return: ``now + connect_timeout + read_timeout``, but not after ``call_deadline`` (the first attempt
        always gets a whole read timeout: :func:`call_deadline` is at least one read timeout long).
    """
    own = now + connect_timeout + read_timeout
    if call_deadline is None:
        return own
    return max(min(own, call_deadline), now)


def call_deadline(start: float, *, budget: float, read_timeout: float) -> float:
    """Return the monotonic instant by which one logical call (every attempt and wait) must be done.

    It is ``start + max(budget, read_timeout)``: a zero budget still allows one read timeout.
    """
    return start + max(budget, read_timeout)


class TruncatedDownloadError(Exception):
    """A streamed body ended before its announced length or the connection dropped mid-stream.

    Raised inside an attempt so the retry loop restarts the download; never escapes the hook (it is
    converted to :class:`~airflow_provider_cloudelements.exceptions.CloudElementsConnectionError`).
    """


def compute_wait(
    attempt: int,
    *,
    retry_after: float | None,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    :param attempt: number of the attempt that just failed (1-based).
    :param retry_after: seconds from the response's ``Retry-After``, or ``None``.
    :param policy: the policy giving caps and backoff parameters.
    :param rand: ``[0, 1)`` random source (injectable for tests).
    :return: ``min(retry_after, max_retry_after)`` when the server said how long (> 0 s); otherwise
        (no header, 0, negative, a past date) "equal jitter" exponential backoff: ``b/2 + U(0, b/2)`` with
        ``b = min(max_backoff, initial_backoff * multiplier ** (attempt - 1))``.
    """
    if retry_after is not None and retry_after > 0:
        return min(retry_after, policy.max_retry_after)
    base = min(policy.max_backoff, policy.initial_backoff * policy.multiplier ** max(attempt - 1, 0))
    return base / 2 + rand() * base / 2


@dataclass(frozen=True)
class RetryPolicy:
    """Retry parameters (all durations in seconds).

    :param budget: total time budget: no new wait is started if it would end after ``budget`` seconds
        since the first attempt began (default 300).
    :param max_retry_after: cap on a server ``Retry-After`` (default 60).
    :param initial_backoff: first backoff without ``Retry-After`` (default 1).
    :param max_backoff: backoff ceiling (default 30).
    :param multiplier: backoff growth factor (default 2).
    :param max_server_error_retries: retries of a plain HTTP 500 on a GET (default 3).
    :param unreachable_budget: when set, a refused connection / failed DNS lookup
        (:func:`unreachable_cause`) is retried only while the call is younger than this many seconds
        (the hooks set it to :data:`DEFAULT_UNREACHABLE_BUDGET` until the host has answered once);
        ``None`` = such errors share the full ``budget`` like any transport error.
    """

    budget: float = DEFAULT_RETRY_BUDGET
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    multiplier: float = DEFAULT_MULTIPLIER
    max_server_error_retries: int = DEFAULT_MAX_SERVER_ERROR_RETRIES
    unreachable_budget: float | None = None
    rand: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    # ----------------------------------------------------------------------------- tenacity pieces
    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, RETRY_AFTER_ATTR, None) if exc is not None else None
        return compute_wait(retry_state.attempt_number, retry_after=retry_after, policy=self, rand=self.rand)

    def _stop(self, retry_state: tenacity.RetryCallState) -> bool:
        elapsed = retry_state.seconds_since_start or 0.0
        budget = self.budget
        if self.unreachable_budget is not None and retry_state.outcome is not None:
            if unreachable_cause(retry_state.outcome.exception()) is not None:
                budget = min(budget, self.unreachable_budget)
        return elapsed + (retry_state.upcoming_sleep or 0.0) > budget

    def _before_sleep(self, logger: logging.Logger | Any, what: str) -> Callable[[tenacity.RetryCallState], None]:
        def log_attempt(retry_state: tenacity.RetryCallState) -> None:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            logger.warning(
                "Cloud Elements %s: attempt %s failed (%s, status=%s, requestId=%s); retrying in %.1f s "
                "(%.0f s of the %.0f s retry budget used)",
                what,
                retry_state.attempt_number,
                describe_exception(exc),
                getattr(exc, "status_code", None),
                getattr(exc, "request_id", None),
                retry_state.upcoming_sleep,
                retry_state.seconds_since_start or 0.0,
                self.budget,
            )

        return log_attempt

    def _kwargs(
        self, *, idempotent: bool, logger: logging.Logger | Any, what: str, retry_server_error: bool = False
    ) -> dict[str, Any]:
        predicate = retry_predicate(
            idempotent=idempotent,
            retry_server_error=retry_server_error,
            max_server_error_retries=self.max_server_error_retries,
        )
        return {
            "retry": tenacity.retry_if_exception(predicate),
            "wait": self._wait,
            "stop": self._stop,
            "reraise": True,
            "before_sleep": self._before_sleep(logger, what),
        }

    def retrying(
        self, *, idempotent: bool, logger: logging.Logger | Any, what: str, retry_server_error: bool = False
    ) -> tenacity.Retrying:
        """A :class:`tenacity.Retrying` for one logical call (``for attempt in ...: with attempt:``).

        :param idempotent: ``False`` for POST calls.
        :param logger: where attempts are logged (WARNING, lazy ``%s``, never a header).
        :param what: short description of the call, e.g. ``"GET /hubs/finance/invoices"``.
        :param retry_server_error: also retry a plain HTTP 500, at most :attr:`max_server_error_retries`
            times (pass ``True`` for ``GET`` only: :func:`retries_server_errors`).
        """
        kwargs = self._kwargs(idempotent=idempotent, logger=logger, what=what, retry_server_error=retry_server_error)
        return tenacity.Retrying(**kwargs)

    def async_retrying(
        self, *, idempotent: bool, logger: logging.Logger | Any, what: str, retry_server_error: bool = False
    ) -> tenacity.AsyncRetrying:
        """The asyncio twin of :meth:`retrying` (sleeps with ``asyncio.sleep``)."""
        kwargs = self._kwargs(idempotent=idempotent, logger=logger, what=what, retry_server_error=retry_server_error)
        return tenacity.AsyncRetrying(**kwargs)


def retry_predicate(
    *, idempotent: bool, retry_server_error: bool, max_server_error_retries: int = DEFAULT_MAX_SERVER_ERROR_RETRIES
) -> Callable[[BaseException], bool]:
    """Build the retry predicate of ONE logical call (a fresh one per call).

    It applies :func:`is_retryable_exception`, plus plain HTTP 500s when ``retry_server_error``, counted
    and no longer retried after ``max_server_error_retries``.

    :param idempotent: ``False`` for POST calls.
    :param retry_server_error: retry a plain HTTP 500 (:func:`retries_server_errors`: ``GET`` only).
    :param max_server_error_retries: retries of a plain 500 at most (default 3).
    :return: ``exception -> bool`` (``True``: worth another attempt).
    """
    server_errors = 0

    def predicate(exc: BaseException) -> bool:
        nonlocal server_errors
        if retry_server_error and is_plain_server_error(exc):
            server_errors += 1
            return server_errors <= max_server_error_retries
        return is_retryable_exception(exc, idempotent=idempotent)

    return predicate


def retries_server_errors(method: str) -> bool:
    """Whether a plain HTTP 500 of ``method`` may be retried.

    Only reads (``GET``/``HEAD``), which change nothing on the server; never ``POST`` (may have been
    processed), nor ``PUT``/``PATCH``/``DELETE``.
    """
    return method.upper() in ("GET", "HEAD")


def describe_exception(exc: BaseException | None) -> str:
    """Describe an attempt's failure for logs, shortly and without secrets.

    The class name, plus the message of our own exceptions, which are built without secrets.
    """
    if exc is None:
        return "no exception"
    if isinstance(exc, CloudElementsApiError):
        return f"{type(exc).__name__}: {exc.message}"
    return type(exc).__name__


# --------------------------------------------------------------------------------------------- Retry-After
def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP-date).

    :param value: the header value or ``None``.
    :param now: current time (aware) for HTTP-dates; defaults to ``datetime.now(timezone.utc)``.
    :return: seconds (> 0, float), or ``None`` when absent, unparseable, 0, negative or a date that has
        passed: none of those says how long to wait, so the caller falls back to its jittered backoff
        (obeying "0" hammered the server with ~110 requests in 5 s).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        if when is None:
            return None
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return seconds if seconds > 0 else None


def parse_http_date(value: str | None) -> datetime | None:
    """Parse an HTTP-date (RFC 9110 ``Date``/``Retry-After``) as an aware UTC datetime.

    Example: ``Tue, 01 Dec 2026 10:00:00 GMT``. Returns ``None`` when absent or unparseable.
    """
    if not value or not value.strip():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)
