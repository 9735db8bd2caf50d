"""The login page lists the demo's logins while they have its published password."""

from __future__ import annotations

import pytest

from chengyun.demo.loader import DEMO_PASSWORD, load_users
from chengyun.org.models import User

pytestmark = pytest.mark.django_db


def test_the_login_page_lists_the_demo_logins_and_one_can_log_in_with_them(client, world, monkeypatch, settings):
    from chengyun.demo import loader

    settings.SHOW_DEMO_LOGINS = True  # as `make demo` serves it
    # The tiny test city has none of the demo's areas and departments: the logins without them.
    monkeypatch.setattr(loader, "DEMO_USERS", [u for u in loader.DEMO_USERS if u[3] is None and u[4] is None])
    load_users(log=lambda *_: None)
    page = client.get("/login/").content.decode()
    assert "Demo logins" in page and DEMO_PASSWORD in page
    for username in ("admin", "operator", "dispatcher", "leader"):
        assert f"<code>{username}</code>" in page
    assert client.post("/login/", {"username": "dispatcher", "password": DEMO_PASSWORD}).status_code == 302

    # Once the passwords are changed (a real installation), none is listed.
    for user in User.objects.filter(username__in=["admin", "operator", "dispatcher", "leader"]):
        user.set_password("something-else-entirely")
        user.save()
    client.logout()
    page = client.get("/login/").content.decode()
    assert "Demo logins" not in page and DEMO_PASSWORD not in page


def test_without_the_demo_the_login_page_lists_no_logins(client, world, settings):
    settings.SHOW_DEMO_LOGINS = True
    page = client.get("/login/").content.decode()
    assert "Demo logins" not in page


def test_unless_turned_on_the_login_page_lists_no_demo_logins(client, world, settings):
    """A server with the demo loaded and its passwords unchanged does not advertise them."""
    settings.SHOW_DEMO_LOGINS = False
    User.objects.create_user(username="dispatcher", password=DEMO_PASSWORD)
    page = client.get("/login/").content.decode()
    assert "Demo logins" not in page and DEMO_PASSWORD not in page
