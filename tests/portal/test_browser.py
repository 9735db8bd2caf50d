"""The portal in a real browser (Debian's Chromium driven by Playwright):
reporting works end to end with JavaScript switched off, and with it on the
map fills in the position. Skipped where Playwright or Chromium is missing;
no browser is ever downloaded."""

from __future__ import annotations

import os
import re

import pytest

from chengyun.intake.models import Report

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's Chromium is not installed"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop running in this thread; the
    # test's own database calls are still plain synchronous ones.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()


def test_reporting_and_tracking_without_javascript(browser, live_server, intake_world):
    context = browser.new_context(java_script_enabled=False, locale="zh-CN")
    page = context.new_page()
    page.goto(live_server.url + "/report/")
    assert page.get_attribute("html", "lang") == "zh-Hans"
    assert not page.is_visible("#map-block"), "without JavaScript there is no map, only fields"
    assert "地图" not in page.inner_text("#where-hint"), "nor does the hint speak of one"

    page.click("button.primary.big")  # nothing filled in
    sync_api.expect(page.locator("#error-summary")).to_be_focused()
    assert page.get_attribute("#id_description", "aria-invalid") == "true"

    page.click("a[href='#id_description']")
    sync_api.expect(page.locator("#id_description")).to_be_focused()
    page.keyboard.type("路灯不亮 晚上很黑")
    page.click("details.coords summary")
    page.fill("#id_lon", "121.25")
    page.fill("#id_lat", "30.5")
    page.fill("#id_phone", "13812345678")
    page.click("button.primary.big")

    assert re.search(r"/report/received/R\d+/(#.*)?$", page.url)
    number = page.inner_text(".tracking-number").strip()
    report = Report.objects.get(number=number)
    assert report.area.code == "100102001" and report.contact.phone == "13812345678"

    page.click(f"a[href='/track/{number}/']")
    assert page.inner_text("h1").find(number) >= 0
    assert page.is_visible(".status-panel")
    assert "13812345678" not in page.content()
    context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en-GB"])
def test_the_form_fits_a_phones_screen(browser, live_server, intake_world, locale):
    """No sideways scrolling at 390 px: a fieldset is as wide as its widest control
    (the file input) unless the style says otherwise."""
    context = browser.new_context(java_script_enabled=False, locale=locale, viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(live_server.url + "/report/")
    widest = page.evaluate("Math.max(...[...document.querySelectorAll('fieldset, input, select, textarea')]"
                           ".map(e => e.getBoundingClientRect().right))")
    assert widest <= 390, f"a control reaches {widest} px"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The confirmation's number on one line, the tracking page without sideways scrolling
    # (its heading holds the number).
    page.fill("#id_description", "路灯整夜不亮")
    page.fill("#id_address", "区1 街道1001 和平路12号")
    page.click("button.primary.big")
    lines = page.evaluate("""() => { const e = document.querySelector('.tracking-number');
        return Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)); }""")
    assert lines == 1, "the tracking number breaks over lines"
    page.goto(live_server.url + "/track/" + page.inner_text(".tracking-number").strip() + "/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_the_maps_own_buttons_speak_chinese_on_chinese_pages(browser, live_server, intake_world):
    page = browser.new_context(locale="zh-CN").new_page()
    page.goto(live_server.url + "/report/")
    sync_api.expect(page.locator("#map a.leaflet-control-zoom-in")).to_have_attribute("title", "放大")
    sync_api.expect(page.locator("#map a.leaflet-control-zoom-out")).to_have_attribute("title", "缩小")


def test_the_map_places_a_pin_and_fills_in_the_position(browser, live_server, intake_world):
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    page.goto(live_server.url + "/report/")
    sync_api.expect(page.locator("#map-block")).to_be_visible()
    sync_api.expect(page.locator("#where-hint")).to_contain_text("a pin on the map")  # there is one now
    sync_api.expect(page.locator("#map path.leaflet-interactive").first).to_be_visible()  # district outlines
    assert page.locator("#map a.leaflet-control-zoom-in").get_attribute("title") == "Zoom in"
    # Wait for the map to settle (fitting the outlines is animated: a click during the
    # animation lands elsewhere), then click the middle of the first outline:
    # district 100101 (the south-west one).
    page.wait_for_function("""() => {
        const p = document.querySelector('#map path.leaflet-interactive');
        if (!p || document.querySelector('#map.leaflet-zoom-anim')) return false;
        const box = JSON.stringify(p.getBoundingClientRect());
        const settled = window.__outlineBox === box;
        window.__outlineBox = box;
        return settled;
    }""", polling=150)
    page.locator("#map path.leaflet-interactive").first.click()
    sync_api.expect(page.locator("#map-status")).to_contain_text("Testcity › District 1 › Street")
    lon, lat = float(page.input_value("#id_lon")), float(page.input_value("#id_lat"))
    assert 120 < lon < 121 and 30 < lat < 31
    page.fill("#id_description", "Street light out all night")
    page.click("button.primary.big")
    assert re.search(r"/report/received/R\d+/(#.*)?$", page.url)
    report = Report.objects.get(number=page.inner_text(".tracking-number").strip())
    assert (report.lon, report.lat) == pytest.approx((lon, lat))
    context.close()


def test_a_pin_outside_the_city_is_refused_at_the_map(browser, live_server, intake_world):
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(live_server.url + "/report/")
    sync_api.expect(page.locator("#map-block")).to_be_visible()
    # As the map fills them in for a click far outside the outlines.
    page.evaluate("""() => { document.getElementById('id_lon').value = '100.000000';
                             document.getElementById('id_lat').value = '10.000000'; }""")
    page.fill("#id_description", "路灯整夜不亮")
    page.click("button.primary.big")
    error = page.locator("#map-error")
    sync_api.expect(error).to_contain_text("不在本市范围内")
    assert "map-error" in page.get_attribute("#map", "aria-describedby")
    link = page.locator(".error-summary a", has_text="不在本市范围内")
    assert link.get_attribute("href") == "#map"
    assert link.inner_text().startswith("在哪里：") and "纬度" not in link.inner_text()
    link.click()  # leads to the map with its error in view, not scrolled above the window
    sync_api.expect(error).to_be_in_viewport()
    assert page.evaluate("document.activeElement.id") == "map"
    assert not Report.objects.exists()
    # A coordinate left out is corrected in its own field: the summary leads there.
    page.fill("#id_lat", "")
    page.fill("#id_lon", "120.5")
    page.click("button.primary.big")
    sync_api.expect(page.locator(".error-summary")).to_be_visible()
    assert page.locator("#map-error").count() == 0
    assert page.locator(".error-summary a", has_text="纬度").get_attribute("href") == "#id_lat"
    assert not Report.objects.exists()
    context.close()


def test_what_was_typed_survives_a_switch_of_text_size_or_language(browser, live_server, intake_world):
    page = browser.new_context(locale="en-GB").new_page()
    page.goto(live_server.url + "/report/")
    page.fill("#id_description", "The street light outside number 12 is out")
    page.fill("#id_address", "区1 街道1001 和平路12号")
    page.click("header a.tool")  # "Larger text"
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("class") == "text-large"
    assert page.input_value("#id_description") == "The street light outside number 12 is out"
    page.click("header form.lang button")  # 简体中文
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert page.input_value("#id_address") == "区1 街道1001 和平路12号"
    page.reload()
    assert page.input_value("#id_description") == "", "kept once, for the switch, not for ever"
