"""What every endpoint shares: the token authentication, the error convention, pagination
and permissions.

Convention: a success is a 2xx whose body is the resource (lists are pages:
`{count, next, previous, results}`); a failure is a 4xx (or 5xx for a bug) whose body is
`{"error": {"code": ..., "message": ..., "fields": {...}?}}`, one line a person can read.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

if TYPE_CHECKING:
    from rest_framework.views import APIView

TOKEN_HEADER = "HTTP_AUTHORIZATION"
TOKEN_PREFIX = "Bearer "


def token_digest(token: str) -> str:
    """Tokens are stored as their SHA-256, so a copy of the database grants no session."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` from /account/v1/confirm/; expired tokens are refused."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        from cpchain.market.account.models import AuthToken

        header = request.META.get(TOKEN_HEADER, "")
        if not header:
            return None
        if not header.startswith(TOKEN_PREFIX) or len(header) > 200:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        token = header[len(TOKEN_PREFIX) :].strip()
        row = AuthToken.objects.select_related("user").filter(key_hash=token_digest(token)).first()
        if row is None:
            raise exceptions.AuthenticationFailed("unknown or revoked token; log in again")
        if row.expires <= timezone.now():
            raise exceptions.AuthenticationFailed("token expired; log in again")
        if not row.user.is_active_account:
            raise exceptions.AuthenticationFailed("this account is suspended")
        return row.user, row

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="pdash-market"'


class IsWalletUser(BasePermission):
    message = "log in first: send Authorization: Bearer <token>"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user is not None and getattr(request.user, "is_authenticated", False)


class IsMarketAdmin(BasePermission):
    """Writes to curated content (carousel, promotions, hot tags) are for admins only."""

    message = "only market administrators may change this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return bool(request.user is not None and getattr(request.user, "is_admin", False))


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return int(settings.PDASH["MAX_PAGE_SIZE"])


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


class ApiError(exceptions.APIException):
    """Raise from a view to answer `status_code` with a named error."""

    def __init__(self, message: str, *, code: str = "invalid", status_code: int = 400) -> None:
        super().__init__(message, code)
        self.status_code = status_code
        self.error_code = code


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
        return "invalid request"
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "invalid request"
    return str(detail)


def _plain(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, reshaped into the one error convention."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "forbidden")
    elif isinstance(exc, RequestDataTooBig):
        exc = ApiError("request body too large", code="too_large", status_code=413)
    elif isinstance(exc, SuspiciousOperation):
        exc = ApiError(str(exc) or "bad request", code="invalid")
    if not isinstance(exc, exceptions.APIException):
        return None
    code = getattr(exc, "error_code", None) or _CODES.get(exc.status_code, "error")
    fields = (
        _plain(exc.detail) if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict) else None
    )
    response = Response(error_body(code, _first_message(exc.detail), fields), status=exc.status_code)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(int(exc.wait) + 1)
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        response["WWW-Authenticate"] = auth_header
    return response


def json_error_view(status_code: int, code: str, message: str) -> Any:
    def view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
        return JsonResponse(error_body(code, message), status=status_code)

    return view


handler400 = json_error_view(status.HTTP_400_BAD_REQUEST, "invalid", "bad request")
handler403 = json_error_view(status.HTTP_403_FORBIDDEN, "forbidden", "forbidden")
handler404 = json_error_view(status.HTTP_404_NOT_FOUND, "not_found", "no such endpoint")
handler500 = json_error_view(status.HTTP_500_INTERNAL_SERVER_ERROR, "server_error", "internal error; it was logged")


def page_size(request: Request) -> int:
    """The page size a list request asked for, clamped to [1, max_page_size]."""
    raw = request.query_params.get("page_size")
    default = int(settings.REST_FRAMEWORK["PAGE_SIZE"])
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError("page_size must be an integer") from None
    if value < 1:
        raise ApiError("page_size must be at least 1")
    return min(value, int(settings.PDASH["MAX_PAGE_SIZE"]))


def page_params(request: Request) -> tuple[int, int]:
    """(page number from 1, page size) of a list request; 400 on nonsense."""
    raw = request.query_params.get("page", "1")
    try:
        page = int(raw)
    except ValueError:
        raise ApiError("page must be an integer") from None
    if not 1 <= page <= 100_000:
        raise ApiError("page must be between 1 and 100000")
    return page, page_size(request)


def page_response(request: Request, total: int, results: list[Any], page: int, size: int) -> Response:
    """The one page shape of every list: {count, next, previous, results}."""

    base, query = "", request.query_params.copy()

    def link(number: int) -> str:
        nonlocal base  # built once: the host check and URL escaping of the path are not free
        base = base or request.build_absolute_uri(request.path)
        query["page"] = str(number)
        return f"{base}?{query.urlencode()}"  # urlencode() output is already an ASCII URI

    has_next = page * size < total
    return Response(
        {
            "count": total,
            "next": link(page + 1) if has_next else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": results,
        }
    )


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for bin/market-start and the testnet."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "search": "elasticsearch" if settings.PDASH["ES_HOSTS"] else "database"})
