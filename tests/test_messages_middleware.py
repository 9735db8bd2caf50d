"""The message storage is made only for requests that use it."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.test import RequestFactory

from chengyun.messages import LazyMessageMiddleware


def _through(view, cookies=None):
    request = RequestFactory().get("/")
    request.COOKIES.update(cookies or {})
    request.session = {}  # what SessionMiddleware would give (the fallback storage's second half)
    response = LazyMessageMiddleware(view)(request)
    return request, response


def test_a_request_that_never_uses_messages_does_not_make_the_storage():
    request, response = _through(lambda r: HttpResponse("ok"))
    assert response.status_code == 200
    assert request._messages._wrapped.__class__.__name__ == "object"  # still the lazy object's `empty`
    assert "messages" not in response.cookies


def test_a_message_added_is_stored_for_the_next_request():
    def view(request):
        messages.success(request, "Case C1 registered.")
        return HttpResponse("ok")

    _request, response = _through(view)
    assert "messages" in response.cookies
    shown = []
    _request, after = _through(lambda r: HttpResponse(shown.extend(str(m) for m in messages.get_messages(r))),
                               cookies={"messages": response.cookies["messages"].value})
    assert shown == ["Case C1 registered."]
    assert after.cookies["messages"].value == ""  # shown once, then cleared
