"""The JSON API at /api/v1/ (OpenAPI docs at /api/v1/docs)."""

import re

from django.http import Http404
from django.utils.translation import gettext as gettext_now
from django.utils.translation import gettext_lazy as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyHeader, HttpBearer, SessionAuth

from chengyun.cases.errors import CaseError
from chengyun.org.services import user_for_token


class BrowserSession(SessionAuth):
    """A logged-in browser (the API docs page, the console's scripts), CSRF-checked
    as Django's forms are. Not tried when the request carries an Authorization
    header or no session cookie: a program with a wrong or missing token gets 401
    (unauthorized), not 403 for a CSRF token it was never meant to send."""

    def __call__(self, request):
        # Not tried at all (no CSRF check, no session user): returning no key is not
        # enough, as Ninja's session check reads request.user whatever the key.
        if "HTTP_AUTHORIZATION" in request.META or self.param_name not in request.COOKIES:
            return None
        return super().__call__(request)


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
    description="City operations: areas, cases and their flow. 城市运行：区域、案件及其流转。Errors are "
                "`{detail, code, field}` in the language of `Accept-Language` (zh-hans or en).",
    auth=[BearerToken(), BrowserSession()],
    urls_namespace="api",
)


@api.exception_handler(CaseError)
def case_error(request, exc: CaseError):
    return api.create_response(
        request, {"detail": exc.message, "code": exc.code, "field": exc.field}, status=exc.status_code
    )


@api.exception_handler(AuthenticationError)
def unauthorized(request, exc: AuthenticationError):
    response = api.create_response(request, {
        "detail": gettext_now("A valid API token is needed: send the header “Authorization: Bearer <token>” "
                              "(tokens: chengyun create-token, or the admin)."),
        "code": "unauthorized", "field": None}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="chengyun"'
    return response


@api.exception_handler(Http404)
def not_found(request, exc: Http404):
    """A missing object (the view's message says which) or an unknown path, in the shape of every other error."""
    detail = str(exc) if exc.args and str(exc) else gettext_now("Not found.")
    return api.create_response(request, {"detail": detail, "code": "not_found", "field": None}, status=404)


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    """Ninja's own refusals (a body that is not JSON, a CSRF failure) in the shape of every other error."""
    if exc.status_code == 400 and str(exc.message).startswith("Cannot parse request body"):
        detail, code, field = gettext_now("The body is not valid JSON."), "invalid", "body"
    else:
        detail, code, field = str(exc.message), "forbidden" if exc.status_code == 403 else "error", None
    return api.create_response(request, {"detail": detail, "code": code, "field": field}, status=exc.status_code)


# The refusals of pydantic (which speaks English only) that the API's users meet,
# in their language; others keep pydantic's own words.
PYDANTIC_PROBLEMS = {
    "missing": _("this field is required."),
    "string_type": _("give a text."),
    "float_type": _("give a number."), "float_parsing": _("give a number."),
    "int_type": _("give a whole number."), "int_parsing": _("give a whole number."),
    "bool_type": _("give true or false."), "bool_parsing": _("give true or false."),
    "dict_type": _("give a JSON object."), "model_type": _("give a JSON object."),
    "list_type": _("give a JSON list."),
    "string_too_long": _("the text is too long."),
    "datetime_type": _("give a date and time (ISO 8601)."), "datetime_parsing": _("give a date and time (ISO 8601)."),
    "datetime_from_date_parsing": _("give a date and time (ISO 8601)."),
}


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    """Bodies and parameters Ninja itself refuses: 400 with the field named,
    in the same shape as every other error (the details follow for tools)."""
    first = exc.errors[0] if exc.errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path", "payload", "form")]
    field = ".".join(loc) or None
    if field is None and first.get("type") == "missing":  # no body at all
        return api.create_response(request, {
            "detail": gettext_now("The body is empty: send the fields as a JSON object."), "code": "invalid",
            "field": "body", "errors": exc.errors}, status=400)
    problem = PYDANTIC_PROBLEMS.get(first.get("type", ""))
    if first.get("type") in ("literal_error", "enum") and (first.get("ctx") or {}).get("expected"):
        # "Input should be 'accept', 'reject' or …": the choices, in the caller's language.
        choices = re.findall(r"'([^']*)'", str(first["ctx"]["expected"])) or [str(first["ctx"]["expected"])]
        problem = gettext_now("use one of: %(choices)s.") % {"choices": ", ".join(choices)}
    elif problem:
        problem = gettext_now(problem)
    detail = gettext_now("Invalid value for %(field)s: %(problem)s") % {
        "field": field or "request", "problem": problem or first.get("msg", ""),
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
