"""``/api/v1/reports`` and ``/api/v1/reports/`` are the same endpoint.

The JSON API's routes end in a slash. Without this, a call without it gets
Django's ``APPEND_SLASH`` redirect (301), and most HTTP clients follow a 301
after a POST with a GET: a sensor alarm sent to ``/api/v1/reports`` would
come back as the list of reports with 200, and the alarm would be lost with
no error. Here such a path is served as if the slash were there (the same
view, no redirect) when only the slashed path exists; a path that exists as
written, and every path outside ``/api/``, is left alone.
"""

from __future__ import annotations

from django.urls import is_valid_path

PREFIX = "/api/"


class ApiTrailingSlashMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith(PREFIX) and not path.endswith("/"):
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(path, urlconf) and is_valid_path(path + "/", urlconf):
                request.path_info = path + "/"
                request.path = request.path + "/"
        return self.get_response(request)
