"""The WSGI application: the whole site, with the machine API beside it.

Open311 (``/open311/``) is called by partner systems with an API key, never
with a browser's cookies: no session, login, CSRF token, flash messages or
language cookie applies to it (its views choose their language from
``locale`` and Accept-Language themselves, see ``open311.views``). Its
requests go to a handler with only the middleware that does apply
(``MACHINE_API_MIDDLEWARE``: security headers, host check, X-Frame-Options),
which takes about 15 % less time per request (measured in-process on a
POST, docs/performance.md). Everything else goes through ``MIDDLEWARE``.
Both handlers resolve the same URLs.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chengyun.settings")
site = get_wsgi_application()  # sets Django up


def _machine_api():
    from django.conf import settings
    from django.core.handlers.exception import convert_exception_to_response
    from django.core.handlers.wsgi import WSGIHandler
    from django.utils.module_loading import import_string

    class MachineApiHandler(WSGIHandler):
        """``WSGIHandler`` with ``MACHINE_API_MIDDLEWARE`` instead of
        ``MIDDLEWARE`` (synchronous middleware only: all of ours is)."""

        def load_middleware(self, is_async=False):
            if is_async:
                raise NotImplementedError("the machine API handler is WSGI only")
            self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
            handler = convert_exception_to_response(self._get_response)
            for path in reversed(settings.MACHINE_API_MIDDLEWARE):
                mw = import_string(path)(handler)
                if hasattr(mw, "process_view"):
                    self._view_middleware.insert(0, mw.process_view)
                if hasattr(mw, "process_template_response"):
                    self._template_response_middleware.append(mw.process_template_response)
                if hasattr(mw, "process_exception"):
                    self._exception_middleware.append(mw.process_exception)
                handler = convert_exception_to_response(mw)
            self._middleware_chain = handler

    return MachineApiHandler(), tuple(settings.MACHINE_API_PREFIXES)


machine_api, MACHINE_API_PREFIXES = _machine_api()


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(MACHINE_API_PREFIXES):
        return machine_api(environ, start_response)
    return site(environ, start_response)
