"""What a production server runs: ``chengyun.wsgi.application``, called as a
WSGI server calls it (not through Django's test client, which builds its own
handler from ``MIDDLEWARE``). Open311 goes to the machine-API handler with
its short middleware list; every other path to the whole site's."""

from __future__ import annotations

import io
import json
import urllib.parse

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from chengyun import wsgi
from chengyun.intake.models import Report

from .conftest import leak_form


@pytest.fixture
def call():
    """Call the application; the test's database transaction stays open
    (as Django's test client does, connections are not closed per request)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    def call(method: str, path: str, form: dict | None = None, **headers) -> tuple[int, dict, bytes]:
        body = urllib.parse.urlencode(form or {}, doseq=True).encode()
        path, _sep, query = path.partition("?")
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": headers.pop("host", "127.0.0.1:8000"),
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
            **{"HTTP_" + k.upper(): v for k, v in headers.items()},
        }
        got = {}

        def start_response(status, response_headers, exc_info=None):
            got["status"], got["headers"] = int(status.split()[0]), response_headers

        chunks = wsgi.application(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            chunks.close()
        names = {}
        for name, value in got["headers"]:
            names.setdefault(name.lower(), []).append(value)
        return got["status"], names, content

    yield call
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_open311_goes_to_the_machine_api_handler_and_everything_else_to_the_site(settings):
    assert wsgi.MACHINE_API_PREFIXES == ("/open311/",)
    chain = wsgi.machine_api._middleware_chain
    names = []
    while hasattr(getattr(chain, "__wrapped__", chain), "get_response"):  # the middleware, outermost first
        inner = getattr(chain, "__wrapped__", chain)
        names.append(f"{type(inner).__module__}.{type(inner).__name__}")
        chain = inner.get_response
    assert names == settings.MACHINE_API_MIDDLEWARE
    assert "django.contrib.sessions.middleware.SessionMiddleware" not in names


def test_an_open311_post_through_the_production_application(call, api_key):
    status, headers, content = call("POST", "/open311/v2/requests.json", leak_form(api_key), accept_language="en")
    assert status == 200, content
    number = json.loads(content)[0]["service_request_id"]
    assert Report.objects.filter(number=number, source=api_key.source).exists()
    assert headers["content-language"] == ["en"]
    assert "Accept-Language" in headers["vary"][0]
    assert headers["x-frame-options"] == ["DENY"] and headers["x-content-type-options"] == ["nosniff"]
    assert "set-cookie" not in headers  # no session, no CSRF cookie: a machine API


def test_errors_through_the_production_application_in_the_callers_language(call, api_key):
    form = leak_form(api_key)
    del form["service_code"]
    status, headers, content = call("POST", "/open311/v2/requests.json", form, accept_language="zh-CN,zh;q=0.9")
    assert status == 400
    [error] = json.loads(content)
    assert error["code"] == 400 and error["description"].startswith("service_code")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["description"])  # in Chinese
    assert headers["content-language"] == ["zh-hans"]
    assert not Report.objects.exists()

    status, headers, content = call("GET", "/open311/v2/requests.xml?locale=en&status=unknown")
    assert status == 400 and b"<errors>" in content and headers["content-language"] == ["en"]


def test_the_host_check_still_applies_to_open311(call, api_key):
    status, _headers, _content = call("GET", "/open311/v2/discovery.json", host="evil.example.com")
    assert status == 400


def test_the_site_keeps_its_middleware(call, services_world):
    status, headers, content = call("GET", "/report/", accept_language="en")
    assert status == 200 and any(c.strip().startswith("csrftoken=") for c in headers.get("set-cookie", []))
    status, _headers, _content = call("POST", "/report/", {"description": "no token"})
    assert status == 403  # CSRF protection
