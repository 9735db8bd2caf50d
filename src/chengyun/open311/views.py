"""Open311 GeoReport v2 at ``/open311/v2/``, JSON and XML, plus the
``servicerequestupdates`` extension. Machine endpoints: no sessions, no CSRF;
writes need a partner's ``api_key``.

Status codes follow the spec's "Possible Errors": 403 for a missing, wrong
or revoked ``api_key``; 404 for what does not exist (an unknown
``service_code`` or ``service_request_id``, a ``jurisdiction_id`` other than
ours); 400 for a missing or invalid parameter. The body is always the spec's
error list, each description naming the parameter.

Choices the spec leaves open:

- ``jurisdiction_id`` is optional; when given it must be
  ``settings.OPEN311_JURISDICTION`` (empty when unset).
- Language: ``?locale=en`` (or ``zh``), else the ``Accept-Language`` header,
  else Chinese. It picks service names, questions, status words and messages.
- ``POST requests`` also takes a JSON body (``Content-Type:
  application/json``), with attributes either as ``"attribute[code]"`` keys
  or as ``{"attribute": {"code": value or [values]}}``. An optional
  ``Idempotency-Key`` header (not in the spec) makes a retry return the first
  request instead of filing a second one. Unknown attributes are ignored.
  ``address_id`` is the code of an area of our area tree.
- A request is stored and gets its id at once (``type`` is ``realtime``), so
  no token is returned; ``tokens/{token}`` accepts the request id as its
  token. Classification, duplicate check, case and routing follow in the
  worker's batch pipeline, usually within a second; until then GET shows the
  request ``open`` with a notice saying so.
- ``GET requests`` pages with ``page`` (from 1) and ``page_size`` (at most
  1000, the default), newest first. Without dates it covers the last 90
  days; an explicit window may span at most 90 days.
- ``GET servicerequestupdates`` lists the status changes of the cases that
  handle requests (``start_date``/``end_date`` as above, ``page``,
  ``page_size``), oldest first. ``POST servicerequestupdates`` records a
  partner's update as a case timeline entry, once per partner ``update_id``;
  it does not change the case's status. Names, emails and phones sent with
  an update are not stored.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import timedelta
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import TooManyFilesSent, ValidationError
from django.core.validators import URLValidator
from django.http import HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from chengyun.areas.locator import in_city
from chengyun.areas.models import Area
from chengyun.cases.errors import CaseError
from chengyun.cases.models import Channel
from chengyun.clock import now
from chengyun.intake import numbers
from chengyun.intake.models import Report
from chengyun.intake.services import MAX_DESCRIPTION, ReportInput, receive, submit
from chengyun.taxonomy.models import Category

from . import attributes as attrs
from . import queries
from .formats import YEARS, errors, parse_w3c, render, w3c
from .models import ServiceAttribute
from .services import authenticate, post_update, recent_services

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_RESULTS = 1000
# servicerequestupdates: FixMyStreet asks for the changes of the last two hours
# and never for a second page; a big city's 12345 line makes more than a
# thousand in that time, so the updates of a window the client gives
# (start_date) come up to this many at once.
MAX_UPDATES = 20_000
UPDATES_WINDOW = timedelta(hours=24)  # the longest window whose updates come up to MAX_UPDATES at once
MAX_PAGE = 1_000_000  # keeps the row offset within what databases take
WINDOW = timedelta(days=90)


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = str(description)


def _w3c_help() -> str:
    return _("use a W3C date and time like 2010-01-01T00:00:00Z, in the years %(first)s to %(last)s.") % {
        "first": YEARS[0], "last": YEARS[1]}


def _bad(field: str, message: str) -> Open311Error:
    return Open311Error(400, _("%(field)s: %(message)s") % {"field": field, "message": message})


security_log = logging.getLogger("django.security.TooManyFieldsSent")


class _Form(dict):
    """A form body as {name: [values]} (what a view reads of ``QueryDict``)."""

    def getlist(self, name: str) -> list[str]:
        return self.get(name, [])


_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _unescape(run: re.Match) -> str:
    return bytes.fromhex(run.group().replace("%", "")).decode("latin-1")


def _unquote_plus(text: str) -> str:
    """``unquote_plus`` of an ASCII string, each run of ``%XX`` decoded by
    ``bytes.fromhex`` at once (``unquote_to_bytes`` splits it escape by escape
    in Python: a Chinese description is mostly escapes)."""
    if "%" not in text:
        return text.replace("+", " ")
    return _ESCAPES.sub(_unescape, text.replace("+", " ")).encode("latin-1").decode("utf-8", "replace")


def form_pairs(text: str, max_num_fields: int | None = None) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, encoding="utf-8",
    max_num_fields=…)``, the same pairs (tested against it on random strings),
    about three times faster for an ASCII body, which is what clients send;
    anything else goes to ``parse_qsl`` itself."""
    if not text.isascii():
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", max_num_fields=max_num_fields)
    if max_num_fields is not None and text and max_num_fields < 1 + text.count("&"):
        raise ValueError("Max number of fields exceeded")  # as parse_qsl raises it
    pairs = []
    for part in text.split("&"):
        if part:
            name, _sep, value = part.partition("=")
            pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def _urlencoded(request) -> _Form:
    """The form of an ``application/x-www-form-urlencoded`` body, parsed as
    ``request.POST`` parses it (UTF-8 only, Django's size and field-count
    limits) without building a ``QueryDict`` pair by pair: a partner's POST is
    parsed on every request (measured: 100 -> 60 µs a body with ``parse_qsl``
    instead of ``QueryDict``; then, for the pairs alone of a bench body,
    34 -> 10 µs with :func:`form_pairs`)."""
    if request.encoding is not None and request.encoding.lower() != "utf-8":  # as Django refuses it
        raise Open311Error(400, _("A form body must be UTF-8 (the request says %(charset)s).") % {
            "charset": request.encoding})
    body = request.body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # as QueryDict does
        text = body.decode("iso-8859-1")
    try:
        pairs = form_pairs(text, settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    except ValueError:  # more fields than allowed: what Django reports as TooManyFieldsSent
        security_log.warning("Open311 request with more than %s fields refused", settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
        raise Open311Error(400, _("The request has too many fields (at most %(n)s).") % {
            "n": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}) from None
    form = _Form()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def _json_scalar(name: str, value) -> str:
    """A value of a JSON body as the form would have sent it; an object or a
    nested list is refused, naming the field (it used to be stored as Python's repr)."""
    if isinstance(value, (dict, list)):
        raise Open311Error(400, _("%(field)s must be a text or a number, not a JSON object or list.")
                           % {"field": name})
    return "" if value is None else str(value)


class Params:
    """The parameters of a request: the query string, plus a form or JSON body."""

    def __init__(self, request) -> None:
        self.query = request.GET
        self.form = _Form()
        self.json: dict = {}
        if request.method == "POST":
            content_type = (request.content_type or "").lower()
            if content_type == "application/json":
                try:
                    body = json.loads(request.body.decode("utf-8") or "{}")
                except (UnicodeDecodeError, ValueError):
                    raise Open311Error(400, _("The request body is not valid JSON.")) from None
                if not isinstance(body, dict):
                    raise Open311Error(400, _("The request body must be a JSON object."))
                self.json = body
            elif content_type == "application/x-www-form-urlencoded":
                self.form = _urlencoded(request)
            else:
                try:
                    self.form = request.POST
                except (MultiPartParserError, TooManyFilesSent) as exc:  # answered in Open311's format
                    raise Open311Error(400, _("The request body is not a form that can be read: %(why)s")
                                       % {"why": exc}) from None

    def keys(self) -> list[str]:
        return list(dict.fromkeys([*self.json.keys(), *self.form.keys(), *self.query.keys()]))

    def getlist(self, name: str) -> list[str]:
        if name in self.json:
            value = self.json[name]
            return [_json_scalar(name, v) for v in (value if isinstance(value, list) else [value])]
        if name in self.form:
            return self.form.getlist(name)
        return self.query.getlist(name)

    def get(self, name: str) -> str:
        if isinstance(self.json.get(name), list) and len(self.json[name]) > 1:
            raise Open311Error(400, _("%(field)s takes one value, not a list.") % {"field": name})
        values = self.getlist(name)
        return values[-1].strip() if values else ""

    def nested(self, name: str):
        return self.json.get(name)


def _language(request) -> str:
    asked = (request.GET.get("locale") or "").strip().lower()
    if not asked:
        return _accepted(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
    return "en" if asked.startswith("en") else "zh-hans"


@functools.lru_cache(maxsize=256)
def _accepted(header: str) -> str:
    """The language of an Accept-Language header: the most wanted of English
    and Chinese (zh-Hans when neither). A partner sends the same header every
    time: it is parsed once (at most 256 kept)."""
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _sep, rest = part.strip().partition(";")
        q = 1.0
        if rest.strip().startswith("q="):
            try:
                q = float(rest.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        if tag.startswith(("en", "zh")) and q > 0:
            ranked.append((-q, i, tag))
    return "en" if ranked and min(ranked)[2].startswith("en") else "zh-hans"


def preflight(allowed) -> HttpResponse:
    """A browser's CORS preflight (OPTIONS) before a cross-site POST."""
    response = HttpResponse(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(m for m in allowed if m != "OPTIONS")
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept-Language, Idempotency-Key"
    response.headers["Access-Control-Max-Age"] = "86400"
    response.headers["Allow"] = ", ".join((*allowed, "OPTIONS"))
    return response


def endpoint(*methods: str):
    """Wrap an Open311 view: method check, language, jurisdiction, errors in
    the requested format."""

    def wrap(view):
        @csrf_exempt
        @functools.wraps(view)
        def run(request, fmt: str, **kwargs):
            language = _language(request)
            with translation.override(language):
                # (the not-found catch-all names OPTIONS itself, and answers it with its 404)
                asked = request.method == "OPTIONS" and "OPTIONS" not in methods
                response = preflight(allowed) if asked else answer(request, fmt, **kwargs)
            # The language is the caller's choice: said, and caches keep one answer per language.
            response.headers["Content-Language"] = language
            patch_vary_headers(response, ("Accept-Language",))
            # Civic apps in a browser may call the API from their own site: it uses no
            # cookies (a partner's key is in the request), so any origin may read it.
            response.headers["Access-Control-Allow-Origin"] = "*"
            return response

        # HEAD is GET without the body (monitors and link checkers ask it; the server leaves the body out).
        allowed = (*methods, "HEAD") if "GET" in methods and "HEAD" not in methods else methods

        def answer(request, fmt, **kwargs):
            if request.method not in allowed:
                response = errors(fmt, 405, _("Method %(method)s is not allowed here.") % {"method": request.method})
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                params = Params(request)
                _check_jurisdiction(params)
                return view(request, fmt, params, **kwargs)
            except Open311Error as e:
                return errors(fmt, e.status, e.description)

        return run

    return wrap


def _check_jurisdiction(params: Params) -> None:
    """A city that names its jurisdiction refuses others (404, as GeoReport
    lists); one that does not serves a single jurisdiction and ignores the
    parameter, as the specification allows: a client set up with any id works."""
    given, ours = params.get("jurisdiction_id"), getattr(settings, "OPEN311_JURISDICTION", "") or ""
    if given and ours and given != ours:
        raise Open311Error(404, _("jurisdiction_id: “%(value)s” is not served here.") % {"value": given})


def _key(params: Params):
    raw = params.get("api_key")
    if not raw:
        raise Open311Error(403, _("api_key: missing. Ask the city for an API key."))
    key = authenticate(raw)
    if key is None:
        raise Open311Error(403, _("api_key: invalid or revoked."))
    return key


def _page(params: Params, most: int = MAX_RESULTS, default: int = MAX_RESULTS) -> tuple[int, int]:
    def positive(name: str, default: int, high: int | None = None) -> int:
        text = params.get(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise _bad(name, _("must be a whole number.")) from None
        if value < 1 or (high is not None and value > high):
            raise _bad(name, _("must be between 1 and %(high)s.") % {"high": high} if high else _("must be at least 1."))
        return value

    size = positive("page_size", default, most)
    page = positive("page", 1, MAX_PAGE)
    return (page - 1) * size, size


def _window(params: Params):
    start_text, end_text = params.get("start_date"), params.get("end_date")
    start = parse_w3c(start_text) if start_text else None
    end = parse_w3c(end_text, date_only_end=True) if end_text else None
    if start_text and start is None:
        raise _bad("start_date", _w3c_help())
    if end_text and end is None:
        raise _bad("end_date", _w3c_help())
    if start is None and end is None:
        end = now()
        start = end - WINDOW
    elif start is None:
        start = end - WINDOW
    elif end is None:
        end = start + WINDOW
    if end < start:
        raise _bad("end_date", _("must not be before start_date."))
    if end - start > WINDOW:
        raise _bad("end_date", _("the window may span at most 90 days."))
    return start, end


# --------------------------------------------------------------------------- discovery and services


@endpoint("GET")
def discovery(request, fmt, params):
    # The services and their definitions are what clients cache by this date.
    changed = max(filter(None, (m.objects.order_by("-updated_at").values_list("updated_at", flat=True).first()
                                for m in (Category, ServiceAttribute))), default=None)
    changeset = w3c(changed) or "2025-01-01T00:00:00+08:00"
    url = request.build_absolute_uri(reverse("open311:discovery", kwargs={"fmt": fmt})).rsplit("/", 1)[0]
    data = {
        "changeset": changeset,
        "contact": settings.OPEN311_CONTACT or _("The city operations centre: %(url)s") % {
            "url": settings.PUBLIC_URL},
        "key_service": getattr(settings, "OPEN311_KEY_SERVICE", "")
        or _("API keys are issued by the city operations centre."),
        "endpoints": [{
            "specification": SPECIFICATION,
            "url": url,
            "changeset": changeset,
            "type": "production",
            "formats": ["text/xml", "application/json"],
        }],
    }
    return render(fmt, data, root="discovery")


@endpoint("GET")
def service_list(request, fmt, params):
    return render(fmt, [queries.service_row(c) for c in queries.services()], root="services", item="service")


def _service(code: str):
    code = (code or "").strip()
    if not code:
        raise _bad("service_code", _("is required."))
    # All services at once, remembered for a few seconds: one query per process
    # every few seconds rather than one per service code (measured: the per-code
    # misses were ~11% of a POST's samples with a hundred services).
    category = recent_services.get("services", lambda: {c.code: c for c in queries.services()}).get(code)
    if category is None:
        raise Open311Error(404, _("service_code: “%(code)s” is not a service of this city.") % {"code": code})
    return category


@endpoint("GET")
def service_definition(request, fmt, params, code):
    category = _service(code)
    data = queries.definition_row(category, attrs.definition(category))
    return render(fmt, data, root="service_definition")


# --------------------------------------------------------------------------- requests


@endpoint("GET", "POST")
def requests_(request, fmt, params):
    if request.method == "POST":
        return _create(request, fmt, params)
    return _search(fmt, params)


def _search(fmt, params):
    ids = [x.strip() for x in params.get("service_request_id").split(",") if x.strip()]
    offset, size = _page(params)
    if ids:
        qs = queries.find_requests(numbers=ids)
    else:
        codes = [x.strip() for x in params.get("service_code").split(",") if x.strip()]
        statuses = {x.strip().lower() for x in params.get("status").split(",") if x.strip()}
        unknown = statuses - {"open", "closed"}
        if unknown:
            raise _bad("status", _("use open or closed."))
        start, end = _window(params)
        qs = queries.find_requests(codes=codes, statuses=statuses, start=start, end=end)
    rows = queries.request_rows(qs[offset:offset + size])
    return render(fmt, rows, root="service_requests", item="request")


@endpoint("GET")
def request_detail(request, fmt, params, number):
    rows = queries.request_rows(queries.find_requests(numbers=[number]))
    if not rows:
        raise Open311Error(404, _("service_request_id: “%(id)s” was not found.") % {"id": number})
    return render(fmt, rows, root="service_requests", item="request")


@endpoint("GET")
def token(request, fmt, params, token):
    """Requests are created at once; a request's token is its id."""
    report = Report.objects.filter(number=numbers.normalise(token) or token).only("number").first()
    if report is None:
        raise Open311Error(404, _("token: “%(token)s” was not found.") % {"token": token})
    return render(fmt, [{"service_request_id": report.number, "token": report.number}],
                  root="service_requests", item="request")


def _coordinate(params: Params, name: str, low: float, high: float) -> float | None:
    text = params.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _bad(name, _("must be a number.")) from None
    if not (low <= value <= high):  # also false for NaN
        raise _bad(name, _("must be between %(low)s and %(high)s.") % {"low": low, "high": high})
    return value


def _location(params: Params) -> tuple[float | None, float | None, str, Area | None]:
    lat = _coordinate(params, "lat", -90, 90)
    lon = _coordinate(params, "long", -180, 180)
    if (lat is None) != (lon is None):
        raise _bad("long" if lon is None else "lat", _("send lat and long together."))
    address = params.get("address_string")
    if len(address) > 300:
        raise _bad("address_string", _("is too long (at most 300 characters)."))
    address_id = params.get("address_id")
    area = None
    if address_id:
        area = Area.objects.filter(code=address_id).first()
        if area is None:
            raise _bad("address_id", _("“%(value)s” is not an area code of this city.") % {"value": address_id})
    if lat is not None and not in_city(lon, lat):
        if not address and area is None:
            raise _bad("lat", _("the point (%(lat)s, %(long)s) is outside the area this city serves.")
                       % {"lat": lat, "long": lon})
        lon = lat = None  # the address says where, inside the city (a device's fix can stray over the boundary)
    if lat is None and not address and area is None:
        raise _bad("lat", _("give a location: lat and long, address_string or address_id."))
    return lon, lat, address, area


def _contact(params: Params) -> dict:
    first, last = params.get("first_name"), params.get("last_name")
    if any("\u4e00" <= ch <= "\u9fff" for ch in first + last):
        name = f"{last}{first}"  # Chinese names: family name first, no space
    else:
        name = f"{first} {last}".strip()
    return {"name": name, "phone": params.get("phone"), "email": params.get("email"),
            "device_id": params.get("device_id"), "account_id": params.get("account_id")}


CONTACT_FIELD = {"name": "first_name", "phone": "phone", "email": "email", "device_id": "device_id",
                 "account_id": "account_id", "idempotency_key": "Idempotency-Key", "category": "service_code",
                 "address": "address_string"}


MAX_MEDIA = 3  # photos in one request, as on the portal


def _media(request, params: Params) -> list[bytes]:
    """The photos of a multipart request's ``media`` field (an extension many
    GeoReport clients send beside or instead of ``media_url``). Only a
    multipart body is looked at for files: reading ``request.FILES`` parses a
    form body a second time."""
    if params.get("media"):  # a text where a file belongs: a client that sends it wrongly is told
        raise _bad("media", _("send photos as files of a multipart/form-data body (a link goes in media_url)."))
    if (request.content_type or "").lower() != "multipart/form-data":
        return []
    others = sorted(name for name in request.FILES if name != "media")
    if others:  # a photo under another name would be dropped without a word
        raise _bad("media", _("send photos as files named media, not %(names)s.") % {"names": ", ".join(others)})
    files = request.FILES.getlist("media")
    if len(files) > MAX_MEDIA:
        raise _bad("media", _("At most %(n)s photos.") % {"n": MAX_MEDIA})
    limit = settings.PHOTO_MAX_BYTES
    for f in files:
        if f.size > limit:  # before reading it; clean_photo() checks the size of what it is given too
            raise _bad("media", _("The photo is too large (at most %(mb)s MB).") % {"mb": limit // (1024 * 1024)})
    return [f.read() for f in files]


def _create(request, fmt, params):
    """POST requests: check everything, then store the request (the worker's pipeline
    does the rest); a request with photos goes through the whole pipeline at once."""
    key = _key(params)
    category = _service(params.get("service_code"))
    lon, lat, address, area = _location(params)
    try:
        definition = recent_services.get("definitions", attrs.definitions).get(category.pk, [])
        answers = attrs.clean(definition, attrs.collect(params))
    except attrs.AttributeInvalid as e:
        raise Open311Error(400, e.message) from None
    description = params.get("description")
    if len(description) > MAX_DESCRIPTION:
        raise _bad("description", _("is too long (at most %(n)s characters).") % {"n": MAX_DESCRIPTION})
    media_url = params.get("media_url")
    if media_url:
        try:
            if len(media_url) > 500:
                raise ValidationError("too long")
            URLValidator(schemes=["http", "https"])(media_url)
        except ValidationError:
            raise _bad("media_url", _("must be an http(s) URL of at most 500 characters.")) from None
    photos = _media(request, params)
    inp = ReportInput(
        channel=Channel.OPEN311, description=description, title="" if description else category.name,
        category=category, lon=lon, lat=lat, address=address, area=area, contact=_contact(params), source=key.source,
        idempotency_key=request.META.get("HTTP_IDEMPOTENCY_KEY", "").strip(), attributes=answers, media_url=media_url,
        photos=photos,
    )
    try:
        # A photo is checked and stripped of its metadata as the portal's are: then the
        # whole pipeline runs before the answer (receive() stores the text alone).
        result = (submit if photos else receive)(inp, by=key.actor)
    except CaseError as e:
        field = CONTACT_FIELD.get(e.field or "", e.field or "request")
        raise Open311Error(400, _("%(field)s: %(message)s") % {"field": field, "message": e.message}) from None
    if result.report.case_id is None:  # waiting for the pipeline: answer from what is in hand
        data = [{"service_request_id": result.report.number, "service_notice": queries.received_notice(),
                 "account_id": None}]
    else:
        row = queries.request_rows(Report.objects.filter(pk=result.report.pk))[0]
        data = [{"service_request_id": row["service_request_id"], "service_notice": row["service_notice"],
                 "account_id": None}]
    return render(fmt, data, root="service_requests", item="request")


# --------------------------------------------------------------------------- servicerequestupdates


@endpoint("GET", "POST")
def request_updates(request, fmt, params):
    if request.method == "POST":
        return _post_update(fmt, params)
    start, end = _window(params)
    # A client's own short window (FixMyStreet's two hours) comes whole; anything else a thousand at a time.
    most = MAX_UPDATES if params.get("start_date") and end - start <= UPDATES_WINDOW else MAX_RESULTS
    offset, size = _page(params, most, most)
    rows = queries.update_rows(start=start, end=end, offset=offset, limit=size)
    # The extension's own root name (FixMyStreet's servicerequestupdates); a POST's answer is singular.
    return render(fmt, rows, root="service_requests_updates", item="request_update")


def _post_update(fmt, params):
    key = _key(params)
    number = params.get("service_request_id")
    if not number:
        raise _bad("service_request_id", _("is required."))
    number = numbers.normalise(number) or number  # as GET takes it: lower case, no R, full-width digits
    report = Report.objects.select_related("case").filter(number=number).first()
    if report is None:
        raise Open311Error(404, _("service_request_id: “%(id)s” was not found.") % {"id": number})
    # The partner's own id for its update: update_id, or update_id_ext as clients of the
    # extension's extended form send it (they then expect our update_id back).
    partner_id_field = "update_id" if params.get("update_id") or not params.get("update_id_ext") else "update_id_ext"
    for name in (partner_id_field, "status", "updated_datetime"):
        if not params.get(name):
            raise _bad(name, _("is required."))
    updated_at = parse_w3c(params.get("updated_datetime"))
    if updated_at is None:
        raise _bad("updated_datetime", _w3c_help())
    media_url = params.get("media_url")
    if media_url:
        try:
            URLValidator(schemes=["http", "https"])(media_url)
        except ValidationError:
            raise _bad("media_url", _("must be an http(s) URL.")) from None
    try:
        posted = post_update(report, key=key, update_id=params.get(partner_id_field), status=params.get("status"),
                             description=params.get("description"), updated_at=updated_at, media_url=media_url)
    except CaseError as e:
        raise Open311Error(400, _("%(field)s: %(message)s") % {"field": e.field or "request", "message": e.message}) from None
    return render(fmt, [{"update_id": posted.update.update_id}], root="service_request_updates", item="request_update")


# --------------------------------------------------------------------------- anything else


def root(request):
    """The endpoint's own address: its discovery document (where GeoReport clients start)."""
    from django.shortcuts import redirect

    return redirect("open311:discovery", fmt="json")


@csrf_exempt
def unknown(request, rest: str):
    """Any other path under the endpoint: the spec's 404 error list (in XML when
    the path ends in .xml), not a web page a client cannot parse."""
    return _unknown(request, "xml" if rest.endswith(".xml") else "json", rest=rest)


@endpoint("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # not found, whatever the method
def _unknown(request, fmt, params, rest: str):
    raise Open311Error(404, _("“%(path)s” is not a GeoReport v2 resource here; every resource ends in .json or "
                              ".xml (see discovery.json).") % {"path": rest})
