"""Cloud Elements error responses (reference §6.1): ``{"message", "requestId"[, "providerMessage"]}``."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

REQUEST_ID_HEADER = "Elements-Request-Id"


def new_request_id() -> str:
    """24 hex chars like ``53dbca9430045c016b46566c``."""
    return secrets.token_hex(12)


class CEError(Exception):
    """Raise from any route to answer ``status`` with the Cloud Elements error body."""

    def __init__(
        self,
        status: int,
        message: str,
        provider_message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.provider_message = provider_message
        self.headers = headers or {}


def request_id_of(request: Request) -> str:
    rid = request.scope.get("ce_request_id")
    if not rid:
        rid = new_request_id()
        request.scope["ce_request_id"] = rid
    return rid


def error_body(message: str, request_id: str, provider_message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "requestId": request_id}
    if provider_message is not None:
        body["providerMessage"] = provider_message
    return body


def error_response(
    status: int,
    message: str,
    request_id: str,
    provider_message: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, request_id, provider_message),
        status_code=status,
        headers={REQUEST_ID_HEADER: request_id, **(headers or {})},
    )


def install_handlers(app: FastAPI) -> None:
    """Map CEError, HTTP errors and validation errors to the CE error body."""

    @app.exception_handler(CEError)
    async def _ce(request: Request, err: CEError) -> JSONResponse:
        return error_response(err.status, err.message, request_id_of(request), err.provider_message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = {404: "Resource not found", 405: "Method not allowed"}.get(err.status_code, str(err.detail))
        return error_response(err.status_code, message, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = ["/".join(str(p) for p in e.get("loc", ())) + ": " + e.get("msg", "") for e in err.errors()]
        return error_response(400, "Invalid request: " + "; ".join(parts), request_id_of(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:  # pragma: no cover - safety net
        return error_response(500, f"Internal emulator error: {type(err).__name__}: {err}", request_id_of(request))
