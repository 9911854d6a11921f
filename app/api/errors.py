"""ApiError: a request that cannot be served, with the status and a sentence for the user.

Both dialects carry the same facts in different shapes: OpenAI clients read
`{"error": {"message", "type", "param", "code"}}`, Ollama clients read `{"error": "..."}`.
The route's path decides which one a client gets (`/v1/...` is OpenAI's).
"""

from __future__ import annotations

from typing import Any

# HTTP status -> OpenAI's error "type" for it.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    421: "permission_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_overloaded",
    507: "insufficient_storage",
}


class ApiError(Exception):
    """A request refused or failed, as the client will see it.

    `param` names the request field at fault (OpenAI's `param`); `headers` go on the
    response (Retry-After for 503, WWW-Authenticate for 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self, dialect: str) -> dict[str, Any]:
        """The JSON body in `dialect` ("openai" or "ollama")."""
        if dialect == "openai":
            kind = _OPENAI_TYPES.get(
                self.status, "server_error" if self.status >= 500 else "invalid_request_error"
            )
            return {
                "error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": self.code,
                }
            }
        return {"error": self.message}


def dialect_of(path: str) -> str:
    """Which error shape a route's clients expect."""
    return "openai" if path == "/v1" or path.startswith("/v1/") else "ollama"


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)
