"""Who may call a route: checks shared by the API routes, the admin API and /metrics."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hitrate.errors import APIError
from hitrate.gateway.auth import Principal, token_from
from hitrate.gateway.state import GatewayState, state_of


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def error_response(exc: APIError) -> Response:
    return Response(exc.body_bytes(), exc.status, media_type="application/json")


def caller(request: Request, state: GatewayState | None = None) -> Principal | None:
    """The key's principal, or None. Pass `state` when the route already has it."""
    return (state or state_of(request)).keys.authenticate(token_from(request.headers))


def unauthorized() -> APIError:
    return APIError(401, "Invalid or missing API key. Send `Authorization: Bearer <key>`.",
                    "authentication_error", "invalid_api_key")


def admin_denied(request: Request) -> Response | None:
    """An error response unless the caller holds the master key (or the gateway is open)."""
    principal = caller(request)
    if principal is None:
        return error_response(unauthorized())
    if not principal.admin:
        return error_response(APIError(403, "This route needs the master key.",
                                       "permission_error", "admin_only"))
    return None
