"""The JSON API at /api/v1/ (OpenAPI docs at /api/v1/docs)."""

from django.utils.translation import gettext_lazy as _
from ninja import NinjaAPI
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


api.add_router("/areas", "chengyun.areas.api.router")
api.add_router("/cases", "chengyun.cases.api.router")
api.add_router("/taxonomy", "chengyun.taxonomy.api.router")

__all__ = ["api", "APIKeyHeader"]
