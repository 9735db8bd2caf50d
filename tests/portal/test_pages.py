"""The portal's pages in both languages, for screen readers and older eyes."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from chengyun.intake.services import ReportInput, submit

from .. import factories as f
from .pages import EN, ZH

pytestmark = pytest.mark.django_db


def assert_accessible_page(html: str, lang: str) -> None:
    """The basics every portal page keeps: language, skip link, landmarks, labels."""
    assert f'<html lang="{lang}"' in html
    assert '<a class="skip" href="#main">' in html and '<main id="main"' in html
    assert "<nav" in html and "<header" in html and "<footer" in html
    assert len(re.findall(r"<h1[ >]", html)) == 1
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    for target in re.findall(r'<label for="([^"]+)"', html):
        assert target in ids, f"label for a missing field: {target}"
    for described in re.findall(r'aria-describedby="([^"]+)"', html):
        for target in described.split():
            assert target in ids, f"aria-describedby points at nothing: {target}"


@pytest.mark.parametrize("url", ["/", "/report/", "/track/"])
def test_pages_in_chinese_and_english(client, intake_world, url):
    zh = client.get(url, **ZH)
    en = client.get(url, **EN)
    assert zh.status_code == en.status_code == 200
    assert_accessible_page(zh.content.decode(), "zh-Hans")
    assert_accessible_page(en.content.decode(), "en")


def test_home_offers_reporting_tracking_language_and_a_staff_login(client, intake_world):
    html = client.get("/", **ZH).content.decode()
    assert 'href="/report/"' in html and 'action="/track/"' in html
    assert f'href="{reverse("console:login")}"' in html
    # The language switch posts to Django's set_language, like the console.
    assert 'action="/i18n/setlang/"' in html and 'name="language" value="en"' in html
    assert 'value="zh-hans"' in client.get("/", **EN).content.decode()


def test_language_switch_changes_the_portal_language(client, intake_world):
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/report/"}, **ZH)
    assert response.status_code == 302 and response["Location"] == "/report/"
    assert '<html lang="en"' in client.get("/report/", **ZH).content.decode()


def test_home_figures_are_this_weeks_reports_from_the_database(client, intake_world):
    for text in ("路灯不亮 晚上很黑", "水管爆裂 路面冒水"):
        lon, lat = f.centre("100102001")
        submit(ReportInput(channel="web", description=text, lon=lon, lat=lat))
    html = client.get("/", **EN).content.decode()
    figures = re.search(r'<dl class="figures">(.*?)</dl>', html, re.S).group(1)
    assert re.findall(r"<dd>(\d+)</dd>", figures) == ["2", "0"]


def test_report_form_groups_leaf_categories_under_their_parent(client, intake_world):
    zh = client.get("/report/", **ZH).content.decode()
    select = re.search(r'<select name="category".*?</select>', zh, re.S).group(0)
    assert re.search(r'<option value=""[^>]*>', select), "the first choice lets the city decide"
    assert select.index('value=""') < select.index("<optgroup")
    group = re.search(r'<optgroup label="分类01">(.*?)</optgroup>', select, re.S).group(1)
    assert 'value="0101"' in group and 'value="0102"' in group and "分类0101" in group
    assert 'value="01"' not in select, "a parent is a heading, not a choice"
    en = client.get("/report/", **EN).content.decode()
    assert "Category 0101" in en and '<optgroup label="Category 01">' in en


def test_two_groups_of_one_name_are_told_apart_by_their_kind(client, intake_world):
    """The standard's 市容环境 is a class of components and a class of events."""
    from chengyun.taxonomy.models import Category

    Category.objects.filter(code="01").update(name="市容环境", kind="component")
    events = f.make_category(code="07", name="市容环境")
    f.make_category(code="0701", parent=events)
    zh = client.get("/report/", **ZH).content.decode()
    assert re.findall(r'<optgroup label="(市容环境[^"]*)">', zh) == ["市容环境 · 部件", "市容环境 · 事件"]
    client.force_login(f.make_user(username="desk", role="operator", area=intake_world.areas[f.CITY]))
    hotline = client.get("/console/hotline/", **ZH).content.decode()
    assert re.findall(r'<optgroup label="(市容环境[^"]*)">', hotline) == ["市容环境 · 部件", "市容环境 · 事件"]


def test_report_form_needs_no_javascript(client, intake_world):
    html = client.get("/report/", **EN).content.decode()
    form = re.search(r'<form method="post" enctype="multipart/form-data".*?</form>', html, re.S).group(0)
    for name in ("description", "address", "lon", "lat", "photo", "name", "phone", "email", "token"):
        assert f'name="{name}"' in form
    assert 'type="number" name="lon"' in form and 'type="file" name="photo"' in form
    assert 'type="submit"' in form
    # The map is an addition: hidden until its script shows it.
    assert 'id="map-block" class="map-block" hidden' in html


def test_larger_text_is_a_plain_link_remembered_in_a_cookie(client, intake_world):
    html = client.get("/report/", **EN).content.decode()
    assert 'class="text-normal"' in html
    link = re.search(r'href="(/text-size/\?text=large[^"]*)"', html).group(1).replace("&amp;", "&")
    response = client.get(link)
    assert response.status_code == 302 and response["Location"] == "/report/"
    html = client.get("/report/", **EN).content.decode()
    assert 'class="text-large"' in html and "text=normal" in html
    away = client.get("/text-size/", {"text": "large", "next": "https://evil.example/"})
    assert away["Location"] == "/"


def test_pages_answer_head_as_monitors_ask(client, intake_world):
    for path in ("/", "/report/", "/track/"):
        r = client.head(path)
        assert r.status_code == 200, path
        assert r["Content-Type"].startswith("text/html")


def test_the_report_form_says_what_is_published_and_that_a_place_is_required(client, intake_world):
    html = client.get("/report/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    where = html[html.index("Where is it?"):html.index("</legend>", html.index("Where is it?"))]
    assert "(required)" in where
    assert "Reports are public" in html and "Your name and contact details are never shown" in html
    assert 'aria-describedby="published-note"' in html, "read out with the send button"
    zh = client.get("/report/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "诉求是公开的" in zh


def test_an_unknown_address_gets_the_portals_page_in_the_visitors_language(client, intake_world):
    r = client.get("/no/such/page/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    html = r.content.decode()
    assert r.status_code == 404 and '<html lang="zh-Hans"' in html and "找不到这个页面" in html
    assert 'href="/report/"' in html, "a way on"
    r = client.get("/no/such/page/", HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 404 and "We could not find this page" in r.content.decode()
    api = client.get("/api/v1/no/such/thing", HTTP_ACCEPT_LANGUAGE="en")
    assert api.status_code == 404 and api.json() == {"detail": "Not found.", "code": "not_found", "field": None}


def test_a_form_sent_without_its_cookie_says_why_and_gives_the_text_back(intake_world):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    r = browser.post("/report/", {"description": "路灯坏了 <b>三天</b>", "address": "和平路12号"},
                     HTTP_ACCEPT_LANGUAGE="en")
    html = r.content.decode()
    assert r.status_code == 403 and "The form could not be sent" in html and "Allow cookies" in html
    assert "路灯坏了 &lt;b&gt;三天&lt;/b&gt;</textarea>" in html, "what they wrote, escaped, to copy"
    assert "DEBUG" not in html


def test_the_server_error_page_stands_alone_in_both_languages():
    from django.template import loader

    html = loader.get_template("500.html").render({})
    assert "出错了" in html and "Something went wrong" in html and "12345" in html


def test_staff_pages_fail_with_the_consoles_own_words(intake_world):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    r = browser.post("/login/", {"username": "x", "password": "y"}, HTTP_ACCEPT_LANGUAGE="en")
    html = r.content.decode()
    assert r.status_code == 403 and "allow cookies for this site" in html and "Report a problem" not in html
    r = browser.get("/console/no/such/page/", HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 404 and "There is no such page" in r.content.decode()


def test_a_form_posted_from_another_site_gets_no_echo_of_its_text(intake_world):
    from django.test import Client

    r = Client(enforce_csrf_checks=True).post("/report/", {"description": "Call 400-EVIL to pay your fine"},
                                              HTTP_ORIGIN="https://evil.example", HTTP_ACCEPT_LANGUAGE="en")
    html = r.content.decode()
    assert r.status_code == 403 and "400-EVIL" not in html and "came from another site" in html
