"""The JSON API at /api/v1/ (OpenAPI docs at /api/v1/docs)."""

from django.utils.translation import gettext as gettext_now
from django.utils.translation import gettext_lazy as _
from ninja import NinjaAPI
from ninja.errors import ValidationError
from ninja.security import APIKeyHeader, HttpBearer, django_auth

from chengyun.cases.errors import CaseError
from chengyun.org.services import user_for_token


class BearerToken(HttpBearer):
    def authenticate(self, request, token):
        user = user_for_token(token)
        if user is not None:
            request.user = user
            return user
        return None


api = NinjaAPI(
    title="Chengyun API",
    version="1",
    description=str(_("City operations: areas, cases and their flow.")),
    auth=[BearerToken(), django_auth],
    urls_namespace="api",
)


@api.exception_handler(CaseError)
def case_error(request, exc: CaseError):
    return api.create_response(
        request, {"detail": exc.message, "code": exc.code, "field": exc.field}, status=exc.status_code
    )


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    """Bodies and parameters Ninja itself refuses: 400 with the field named,
    in the same shape as every other error (the details follow for tools)."""
    first = exc.errors[0] if exc.errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path", "payload", "form")]
    field = ".".join(loc) or None
    detail = gettext_now("Invalid value for %(field)s: %(problem)s") % {
        "field": field or "request", "problem": first.get("msg", ""),
    }
    return api.create_response(
        request, {"detail": detail, "code": "invalid", "field": field, "errors": exc.errors}, status=400
    )


api.add_router("/areas", "chengyun.areas.api.router")
api.add_router("/cases", "chengyun.cases.api.router")
api.add_router("/reports", "chengyun.intake.api.router")
api.add_router("/classifier", "chengyun.intake.api.classifier_router")
api.add_router("/taxonomy", "chengyun.taxonomy.api.router")
api.add_router("/signs", "chengyun.signs.api.router")
api.add_router("/readings", "chengyun.signs.api.readings_router")

__all__ = ["api", "APIKeyHeader"]
