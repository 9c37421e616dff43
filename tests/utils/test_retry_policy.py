"""Pure tests of the retry predicate, wait computation and stop rule (client/retry.py)."""

from __future__ import annotations

import logging

import httpx
import pytest
import tenacity

from airflow_provider_cloudelements.client.protocol import ErrorInfo, exception_for_response
from airflow_provider_cloudelements.client.retry import (
    AttemptDeadlineError,
    RetryPolicy,
    TruncatedDownloadError,
    compute_wait,
    is_retryable_exception,
    is_retryable_status,
)
from airflow_provider_cloudelements.exceptions import (
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsConflictError,
    CloudElementsConnectionError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)


@pytest.mark.parametrize(
    ("status", "throttled", "idempotent", "expected"),
    [
        (429, False, True, True),
        (429, False, False, True),
        (502, False, True, True),
        (503, False, True, True),
        (504, False, True, True),
        (502, False, False, False),
        (503, False, False, False),
        (500, False, True, False),
        (500, True, True, True),
        (500, True, False, True),
        (400, False, True, False),
        (401, False, True, False),
        (403, False, True, False),
        (404, False, True, False),
        (409, False, True, False),
        (None, False, True, False),
    ],
)
def test_is_retryable_status(status, throttled, idempotent, expected):
    assert is_retryable_status(status, throttled=throttled, idempotent=idempotent) is expected


def _api_exc(status: int, provider: str | None = None):
    return exception_for_response(status, ErrorInfo("m", "rid", provider), method="GET", path="/x")


@pytest.mark.parametrize(
    ("status", "provider", "cls", "retryable"),
    [
        (429, None, CloudElementsThrottledError, True),
        (500, "message=ThrottleExceeded; errorCode=003001", CloudElementsThrottledError, True),
        (500, "errorCode=003001", CloudElementsThrottledError, True),
        (500, "NullPointerException", CloudElementsServerError, False),
        (502, None, CloudElementsServerError, True),
        (503, None, CloudElementsServerError, True),
        (504, None, CloudElementsServerError, True),
        (400, "3100 - AuthorizationFailed", CloudElementsBadRequestError, False),
        (401, None, CloudElementsAuthenticationError, False),
        (403, None, CloudElementsForbiddenError, False),
        (404, None, CloudElementsNotFoundError, False),
        (409, None, CloudElementsConflictError, False),
    ],
)
def test_predicate_on_api_errors(status, provider, cls, retryable):
    exc = _api_exc(status, provider)
    assert type(exc) is cls
    assert is_retryable_exception(exc) is retryable


def test_predicate_on_transport_errors():
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    reset = httpx.ReadError("[Errno 104] Connection reset by peer")
    for exc in (
        refused,
        reset,
        httpx.ReadTimeout("x"),
        httpx.ConnectTimeout("x"),
        httpx.PoolTimeout("x"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.WriteError("x"),
        TruncatedDownloadError("x"),
        AttemptDeadlineError("x"),
    ):
        assert is_retryable_exception(exc), exc
    # POST: only when the request surely did not reach the server
    assert is_retryable_exception(refused, idempotent=False)
    assert is_retryable_exception(httpx.ConnectTimeout("x"), idempotent=False)
    assert is_retryable_exception(httpx.PoolTimeout("x"), idempotent=False)
    assert not is_retryable_exception(reset, idempotent=False)
    assert not is_retryable_exception(httpx.ReadTimeout("x"), idempotent=False)
    assert not is_retryable_exception(AttemptDeadlineError("x"), idempotent=False)
    # never
    assert not is_retryable_exception(ValueError("x"))
    assert not is_retryable_exception(KeyError("x"))
    assert not is_retryable_exception(CloudElementsConnectionError("non-seekable"))


def test_compute_wait_retry_after_wins_and_is_capped():
    policy = RetryPolicy(max_retry_after=60)
    assert compute_wait(1, retry_after=2.5, policy=policy) == 2.5
    assert compute_wait(1, retry_after=3600, policy=policy) == 60
    # issue 11 #10: Retry-After 0 / negative falls back to the jittered backoff (b/2 .. b)
    assert 15 <= compute_wait(7, retry_after=0, policy=policy) <= 30
    assert 0.5 <= compute_wait(1, retry_after=-5, policy=policy) <= 1


def test_compute_wait_backoff_is_jittered_exponential_and_capped():
    policy = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=30)
    lo = [compute_wait(a, retry_after=None, policy=policy, rand=lambda: 0.0) for a in range(1, 9)]
    hi = [compute_wait(a, retry_after=None, policy=policy, rand=lambda: 0.999999) for a in range(1, 9)]
    assert lo == [0.5, 1, 2, 4, 8, 15, 15, 15]
    assert [round(h) for h in hi] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(lo_ <= hi_ for lo_, hi_ in zip(lo, hi, strict=True))


def test_stop_on_time_budget_not_attempt_count():
    clock = {"t": 0.0}
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)
        clock["t"] += s

    policy = RetryPolicy(budget=20, initial_backoff=1, max_backoff=8, rand=lambda: 1.0)
    calls = {"n": 0}

    def fail():
        calls["n"] += 1
        raise _api_exc(503)

    retrying = policy.retrying(idempotent=True, logger=logging.getLogger("t"), what="GET /x")
    retrying = retrying.copy(sleep=fake_sleep)
    # tenacity measures seconds_since_start with time.monotonic; drive it from the fake clock instead
    real = tenacity.RetryCallState.seconds_since_start
    try:
        tenacity.RetryCallState.seconds_since_start = property(lambda self: clock["t"])  # type: ignore[assignment]
        with pytest.raises(CloudElementsServerError):
            retrying(fail)
    finally:
        tenacity.RetryCallState.seconds_since_start = real  # type: ignore[assignment]
    # waits 1, 2, 4, 8 (=15 s); the next 8 s wait would end at 23 s > 20 s budget -> stop
    assert sleeps == [1, 2, 4, 8]
    assert calls["n"] == 5


def test_non_retryable_error_raises_immediately():
    calls = {"n": 0}

    def fail():
        calls["n"] += 1
        raise _api_exc(404)

    with pytest.raises(CloudElementsNotFoundError):
        RetryPolicy(budget=100).retrying(idempotent=True, logger=logging.getLogger("t"), what="x")(fail)
    assert calls["n"] == 1


def test_zero_budget_means_single_attempt():
    calls = {"n": 0}

    def fail():
        calls["n"] += 1
        raise _api_exc(429)

    with pytest.raises(CloudElementsThrottledError):
        RetryPolicy(budget=0).retrying(idempotent=True, logger=logging.getLogger("t"), what="x")(fail)
    assert calls["n"] == 1


# ---------------------------------------------------------------------------------------------- issue 11
def test_attempt_and_call_deadlines():
    from airflow_provider_cloudelements.client.retry import attempt_deadline, call_deadline

    end = call_deadline(100.0, budget=3, read_timeout=2)
    assert end == 103.0 and call_deadline(100.0, budget=0, read_timeout=2) == 102.0  # one read timeout
    assert attempt_deadline(100.0, call_deadline=end, connect_timeout=0, read_timeout=2) == 102.0
    assert attempt_deadline(102.7, call_deadline=end, connect_timeout=0, read_timeout=2) == 103.0  # inside budget
    assert attempt_deadline(104.0, call_deadline=end, connect_timeout=0, read_timeout=2) == 104.0  # never negative
    assert attempt_deadline(100.0, call_deadline=None, connect_timeout=1, read_timeout=2) == 103.0


def test_plain_500_retried_three_times_for_gets_only():
    from airflow_provider_cloudelements.client.retry import retries_server_errors

    assert retries_server_errors("GET")
    assert not any(retries_server_errors(m) for m in ("POST", "PUT", "PATCH", "DELETE"))
    calls = {"n": 0}

    def fail():
        calls["n"] += 1
        raise _api_exc(500)

    policy = RetryPolicy(budget=100, initial_backoff=0.001, max_backoff=0.001)
    with pytest.raises(CloudElementsServerError):
        policy.retrying(idempotent=True, logger=logging.getLogger("t"), what="GET /x", retry_server_error=True)(fail)
    assert calls["n"] == 4
    calls["n"] = 0
    with pytest.raises(CloudElementsServerError):
        policy.retrying(idempotent=True, logger=logging.getLogger("t"), what="PUT /x")(fail)
    assert calls["n"] == 1
    assert not is_retryable_exception(_api_exc(500)) and is_retryable_exception(_api_exc(500), retry_server_error=True)
    assert is_retryable_exception(_api_exc(500, "ThrottleExceeded"), idempotent=False)  # a throttle is a 429
