"""What the Cloud Elements sensors share: their timeout error and Airflow's sensor loop with it."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException
from airflow.sdk import BaseSensorOperator

from airflow_provider_cloudelements.exceptions import CloudElementsTimeoutError

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudElementsSensorTimeoutError(CloudElementsTimeoutError, AirflowSensorTimeout):
    """A Cloud Elements sensor timed out.

    Also an ``AirflowSensorTimeout``, so Airflow fails the task without retrying it (a retry would restart
    the timeout clock) and ``soft_fail`` skips it.
    """


def run_sensor_loop(sensor: BaseSensorOperator, context: Context) -> Any:
    """``BaseSensorOperator.execute`` with its timeout raised as :class:`CloudElementsSensorTimeoutError`."""
    try:
        return BaseSensorOperator.execute(sensor, context)
    except CloudElementsSensorTimeoutError:
        raise
    except AirflowSensorTimeout as err:
        raise CloudElementsSensorTimeoutError(str(err)) from err


def resume_skipping_only_timeouts(
    sensor: BaseSensorOperator, next_method: str, next_kwargs: Any, context: Context
) -> Any:
    """``BaseSensorOperator.resume_execution``, but ``soft_fail`` skips only a real timeout.

    The base class turns *every* ``AirflowException`` raised on resume into a skip, which would hide an API
    or trigger error behind a skipped task.
    """
    try:
        return BaseSensorOperator.resume_execution(sensor, next_method, next_kwargs, context)
    except AirflowSkipException as skip:
        cause = skip.__cause__
        if cause is None or isinstance(cause, (AirflowSensorTimeout, AirflowSkipException)):
            raise
        raise cause from None


def timeout_seconds(sensor: BaseSensorOperator) -> float:
    """The sensor's ``timeout`` in seconds (a timedelta or a number)."""
    timeout = sensor.timeout
    return timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
