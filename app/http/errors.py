"""OpenAI-shaped errors: one exception type, one renderer."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.protocol.openai import error_payload

_TYPE_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_error", 503: "service_unavailable", 504: "timeout_error",
}


class OpenAIError(Exception):
    """Raised anywhere in the ingress; rendered as `{"error": {...}}` with `status`."""

    def __init__(self, status: int, message: str, code: str | int | None = None,
                 param: str | None = None, type_: str | None = None,
                 retry_after_s: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        self.type = type_ or _TYPE_BY_STATUS.get(status, default_type)
        self.headers = dict(headers or {})
        if retry_after_s is not None:
            self.headers["retry-after"] = str(retry_after_s)

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_payload(self.message, self.type, self.code, self.param),
                            status_code=self.status, headers={**self.headers, **(extra_headers or {})})


def from_validation_error(exc: ValidationError | RequestValidationError) -> OpenAIError:
    """A schema violation: 400 naming the first offending field (not FastAPI's 422)."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return OpenAIError(400, message, code="invalid_request", param=param)


def install_error_handlers(app) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return from_validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return OpenAIError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return OpenAIError(500, f"internal error: {type(exc).__name__}", code="internal_error").response()
