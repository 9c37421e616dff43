"""Typed errors raised by the Cloud Elements hook, operators, sensors and triggers.

Every class derives from :class:`airflow.exceptions.AirflowException` (through
:class:`CloudElementsError`), so Airflow treats them as ordinary task failures. API errors carry the
HTTP status, the Cloud Elements ``requestId`` and the provider's ``providerMessage`` (reference §6.1)
and never a secret: messages are built only from the response body and from values the caller passed
that are not credentials.
"""

from __future__ import annotations

from typing import Any

try:  # inside Airflow every error is an Airflow task failure; the client core also imports without Airflow
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
except ImportError:  # pragma: no cover - exercised by tests/unit/client (Airflow blocked)

    class AirflowException(Exception):  # type: ignore[no-redef]
        """Stand-in base when Airflow is not importable (the client core used on its own)."""

    class AirflowFailException(AirflowException):  # type: ignore[no-redef]
        """Stand-in for Airflow's non-retryable task failure."""


class CloudElementsError(AirflowException):
    """Base class of every error this provider raises.

    :param message: human readable explanation (never contains a secret).
    :param status_code: HTTP status of the failed call, or ``None`` when no call was made.
    :param request_id: Cloud Elements ``requestId`` / ``Elements-Request-Id`` of the failed call.
    :param provider_message: the raw provider text (``providerMessage``), e.g. an Intuit fault.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # AirflowException declares status_code as an HTTPStatus class attribute for its REST API;
        # ours is the Cloud Elements response status (or None when no call was made).
        self.status_code = status_code  # type: ignore[assignment]
        self.request_id = request_id
        self.provider_message = provider_message

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"requestId={self.request_id}")
        if self.provider_message:
            parts.append(f"providerMessage={self.provider_message}")
        return " | ".join(parts)


class CloudElementsConfigError(CloudElementsError, AirflowFailException, ValueError):
    """Bad input detected before any network call.

    For example a missing secret, an unknown element key or resource, a non-positive page size, an
    unparseable date, a connection of the wrong type.

    Derives from ``AirflowFailException``: the task fails at once, without retries, since bad input
    does not heal.
    """


class CloudElementsCEQLError(CloudElementsConfigError):
    """A CEQL ``where`` clause the target element cannot run, or a value the builder cannot quote.

    For example ``OR`` for QuickBooks Online (reference §3.4).
    """


class CloudElementsApiError(CloudElementsError):
    """The Cloud Elements API answered with an error status (reference §6.2)."""


class CloudElementsBadRequestError(CloudElementsApiError):
    """HTTP 400: invalid parameters or CEQL ("Error parsing query"), invalid id, provider validation."""


class CloudElementsAuthenticationError(CloudElementsApiError):
    """HTTP 401: unknown secret or element token, or a failed provider token refresh.

    The user/organization secret or the element token is unknown (or the token was deleted), or the
    provider's token refresh failed. Not retryable: re-authorize the element instance.
    """


class CloudElementsForbiddenError(CloudElementsApiError):
    """HTTP 403: the provider forbids the call, or the element instance is disabled."""


class CloudElementsNotFoundError(CloudElementsApiError):
    """HTTP 404: unknown record id, bulk job, instance or route."""


class CloudElementsConflictError(CloudElementsApiError):
    """HTTP 409: conflict / already exists."""


class CloudElementsThrottledError(CloudElementsApiError):
    """HTTP 429 (or a 500 whose ``providerMessage`` says throttled) still failing when the retry budget was spent.

    The retry budget is a time budget (connection extra ``retry_budget``).
    """


class CloudElementsServerError(CloudElementsApiError):
    """HTTP 5xx still failing when the retry time budget was spent, or a non-JSON error body.

    A non-JSON body is, for example, an HTML 502 from a proxy.
    """


class CloudElementsResponseTooLargeError(CloudElementsApiError):
    """A non-download response larger than the hook's cap, refused before it is read into memory.

    A non-download response is a status poll, a page or an instance; the cap is
    ``client.protocol.MAX_RESPONSE_BYTES`` (16 MiB). Not retried.
    """


class CloudElementsBulkJobError(CloudElementsError):
    """A bulk job ended FAILED, ABORTED or CANCELLED, or reported a status this provider does not know.

    The statuses are listed in reference §4.2.
    """


class CloudElementsRecordFailuresError(CloudElementsBulkJobError):
    """A bulk job's ``recordsFailedCount`` exceeded the operator's ``max_failed_records``."""


class CloudElementsReconciliationError(CloudElementsError):
    """Landed record counts disagree with what Cloud Elements reported: nothing is published.

    The reported count is ``recordsCount`` or ``Elements-Total-Count``; publishing would lose or duplicate
    data.
    """


class CloudElementsTimeoutError(CloudElementsError):
    """A bulk job, sensor or trigger passed its absolute wall-clock deadline."""


class CloudElementsDataError(CloudElementsConfigError):
    """A landed file cannot be loaded; the target table is left unchanged.

    Causes: a line that is not a JSON object, a record without an id, an unparseable updated/deleted
    timestamp. Raised while loading, inside the load transaction. A :class:`CloudElementsConfigError`
    (bad input, not retryable).
    """


class CloudElementsConnectionError(CloudElementsServerError):
    """No usable HTTP response, after the retry time budget or when a retry was unsafe; ``status_code`` is ``None``.

    Causes: connection refused or reset, connect/read timeout, or a streamed body (bulk download) cut off
    mid-stream, still failing when the retry time budget was spent, or not retried because a retry was
    unsafe (a POST that may have been processed, a non-seekable file already partly written).
    """


def error_for_event(err: BaseException) -> dict[str, object]:
    """A JSON-safe description of ``err`` for a trigger event (no secrets: our messages hold none).

    ``{"type": class name, "message", "status_code", "request_id", "provider_message"}``; the type is
    only meaningful for this module's classes (see :func:`exception_from_event`).
    """
    return {
        "type": type(err).__name__,
        "message": str(getattr(err, "message", err)),
        "status_code": getattr(err, "status_code", None),
        "request_id": getattr(err, "request_id", None),
        "provider_message": getattr(err, "provider_message", None),
    }


def exception_from_event(error: object, fallback_message: str) -> CloudElementsError:
    """Rebuild the typed error a trigger reported (:func:`error_for_event`).

    Unknown types become :class:`CloudElementsBulkJobError`, so nothing outside this hierarchy is ever raised.
    """
    if not isinstance(error, dict):
        return CloudElementsBulkJobError(fallback_message)
    cls = globals().get(str(error.get("type")))
    if not (isinstance(cls, type) and issubclass(cls, CloudElementsError)):
        cls = CloudElementsBulkJobError
    status = error.get("status_code")
    return cls(
        str(error.get("message") or fallback_message),
        status_code=status if isinstance(status, int) else None,
        request_id=str(error["request_id"]) if error.get("request_id") else None,
        provider_message=str(error["provider_message"]) if error.get("provider_message") else None,
    )


def __getattr__(name: str) -> Any:
    """Resolve ``as_instance_id`` from its old import path, lazily (no import cycle).

    It moved to :mod:`airflow_provider_cloudelements.utils.validation` (validators do not live here).
    """
    if name == "as_instance_id":
        from airflow_provider_cloudelements.utils.validation import as_instance_id

        return as_instance_id
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CloudElementsModelError(CloudElementsConfigError):
    """A common-resource model that cannot be applied (raised before any call).

    A common-resource model (definitions + per-element transformations) that cannot be applied: unknown element or
    vendor resource, unknown vendor field, a type the element cannot convert, a duplicate or unmapped field. Raised
    before any call.

    :ivar resource: the common resource concerned (``None`` for model-level problems).
    :ivar field: the common or vendor field path concerned, when there is one.
    :ivar element: the element key concerned, when there is one.
    """

    def __init__(
        self, message: str, *, resource: str | None = None, field: str | None = None, element: str | None = None
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.field = field
        self.element = element
