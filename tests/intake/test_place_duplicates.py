"""A call without a point is matched by place: a pinned case lies in a grid of
the street the call's address names, and is found there (live and in an
import); a call in another language about that street asks a dispatcher."""

from __future__ import annotations

import json

import pytest
import shapely
from django.core.management import call_command

from chengyun.areas.locator import get_locator
from chengyun.areas.models import Area, AreaLevel
from chengyun.intake.models import DuplicateOutcome, Report
from chengyun.intake.services import ReportInput, submit

from .. import factories as f

LEAK = "水管爆裂，路面一直冒水"


@pytest.fixture
def grid(intake_world):
    """A grid inside street 100101001, around the street's centre (where pinned cases fall)."""
    street = Area.objects.get(code="100101001")
    level = AreaLevel.objects.create(key="grid", name="网格", name_en="Grid", depth=3)
    lon, lat = f.centre("100101001")
    area = Area(code="100101001001", name="第一网格", name_en="Grid 1", level=level, parent=street, path="")
    area.set_geometry(shapely.box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01))
    area.save()
    Area.objects.filter(pk=area.pk).update(path=area.compute_path())
    assert get_locator().locate(lon, lat).code == "100101001001"
    return area


def pinned_leak(intake_world):
    lon, lat = f.centre("100101001")
    case = submit(ReportInput(channel="web", description=LEAK, category=intake_world.categories["0101"],
                              lon=lon, lat=lat)).report.case
    assert case.area.code == "100101001001"
    return case


def test_a_call_placed_in_a_street_finds_the_pinned_case_in_its_grid(intake_world, grid):
    case = pinned_leak(intake_world)
    call = submit(ReportInput(channel="hotline", description="水管爆裂了，路面一直在冒水", category="0101",
                              area="100101001")).report
    assert call.lon is None and call.area.code == "100101001"
    assert call.duplicate == DuplicateOutcome.ASK  # an area alone at most asks
    assert call.duplicate_explanation["best_case"] == case.number
    assert call.duplicate_explanation["place_by"] == "area"


def test_a_call_in_english_about_the_place_asks_a_dispatcher_where_the_place_is_small_for_the_category(
        intake_world, grid, client, admin_user):
    """The same area counts as close as two places in it usually are, to the category's
    radius: the grid (about 2 km across, spread ~1.1 km) against a 3 km radius."""
    from chengyun.taxonomy.models import Category

    Category.objects.filter(code="0101").update(duplicate_radius_m=3000)
    case = pinned_leak(intake_world)
    call = submit(ReportInput(channel="hotline", description="A water pipe burst, water all over the road",
                              category="0101", area="100101001001")).report
    exp = call.duplicate_explanation
    assert call.duplicate == DuplicateOutcome.ASK and exp["best_case"] == case.number
    assert exp["text_compared"] is False and exp["place_by"] == "area"
    assert 1000 < exp["spread_m"] < 1200 and exp["place"] == pytest.approx(1 - exp["spread_m"] / 3000, abs=1e-3)
    client.force_login(admin_user)
    page = client.get(f"/console/cases/{call.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"same area: places in it are typically {exp['spread_m']} m apart" in page
    assert "place 0.6" in page and "× 0.64" in page and "× 0.6364" not in page, "weights rounded as shown"


def test_a_street_much_wider_than_the_category_radius_says_nothing_about_the_place(intake_world, grid):
    """This test city's streets are tens of kilometres across: a leak somewhere in one
    is not the pinned leak, and the call in English is a case of its own."""
    pinned_leak(intake_world)
    call = submit(ReportInput(channel="hotline", description="A water pipe burst, water all over the road",
                              category="0101", area="100101001")).report
    exp = call.duplicate_explanation
    assert call.duplicate == DuplicateOutcome.NEW and exp["place"] == 0 and exp["spread_m"] > 10_000


def test_an_import_finds_the_pinned_case_in_the_streets_grid(intake_world, grid, tmp_path):
    case = pinned_leak(intake_world)
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
        {"external_id": "C1", "description": "水管爆裂了，路面一直在冒水", "category": "0101", "address": "街道1001",
         "received_at": case.created_at.isoformat()},
        {"external_id": "C2", "description": "A water pipe burst, water all over the road", "category": "0101",
         "address": "街道1001", "received_at": case.created_at.isoformat()},
    ]), encoding="utf-8")
    call_command("import_reports", str(path), stdout=open("/dev/null", "w"))
    first, english = Report.objects.get(external_id="C1"), Report.objects.get(external_id="C2")
    assert first.duplicate == DuplicateOutcome.ASK and first.duplicate_explanation["best_case"] == case.number
    # The English call: asked about too (about the first call's case, at the same address, or the pinned one).
    assert english.duplicate == DuplicateOutcome.ASK, english.duplicate_explanation
    assert english.duplicate_explanation["text_compared"] is False


def test_of_the_cases_a_dispatcher_might_be_asked_about_one_whose_text_was_compared_comes_first(intake_world, grid):
    """An English case's place and time alone (the text not comparable) may score
    above a Chinese case's text, place and time: the Chinese call is asked about
    the Chinese case it repeats."""
    leak = intake_world.categories["0101"]
    first = submit(ReportInput(channel="hotline", description=LEAK, category=leak, area="100101001")).report
    submit(ReportInput(channel="hotline", description="A water pipe burst, water all over the road", category=leak,
                       area="100101001"))
    third = submit(ReportInput(channel="hotline", description="水管爆裂了，路面一直在冒水", category=leak,
                               area="100101001")).report
    assert third.duplicate == DuplicateOutcome.ASK
    assert third.duplicate_explanation["best_case"] == first.case.number
    assert "text_compared" not in third.duplicate_explanation


def test_a_case_of_another_category_counts_only_with_words_alike(intake_world, tmp_path):
    """A street-light report at the spot of a fresh leak case is not asked about (live and
    in an import); a report that says what the case says, filed under a sibling
    category, still is a duplicate question."""
    lon, lat = f.centre("100103001")
    leak = submit(ReportInput(channel="web", description=LEAK, category="0101", lon=lon, lat=lat)).report.case
    # Text similarity 0.29 ("路面一直" in both): a duplicate question before (0.8 × 0.68 = 0.54).
    lamp = submit(ReportInput(channel="web", description="路面一直很黑 路灯不亮", category="0102", lon=lon,
                              lat=lat)).report
    assert lamp.duplicate == DuplicateOutcome.NEW and "best_case" not in lamp.duplicate_explanation
    assert lamp.duplicate_explanation["candidates"] == 1
    alike = submit(ReportInput(channel="web", description=LEAK, category="0102", lon=lon, lat=lat + 0.0001)).report
    assert alike.duplicate != DuplicateOutcome.NEW and alike.duplicate_explanation["best_case"] == leak.number
    assert alike.duplicate_explanation["category_factor"] == 0.8

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
        {"external_id": "L1", "description": "Street light out, very dark at night", "category": "0102",
         "lon": lon, "lat": lat, "received_at": leak.created_at.isoformat()},
        {"external_id": "L2", "description": "路面一直很黑 路灯不亮", "category": "0102", "lon": lon,
         "lat": lat + 0.0002, "received_at": leak.created_at.isoformat()},
    ]), encoding="utf-8")
    call_command("import_reports", str(path), stdout=open("/dev/null", "w"))
    english, chinese = Report.objects.get(external_id="L1"), Report.objects.get(external_id="L2")
    assert english.duplicate == DuplicateOutcome.NEW, "another category and another language: never counted"
    # The Chinese street-light row: not asked about the leak (it was, as the best compared match, before).
    assert chinese.duplicate_explanation.get("best_case") != leak.number


def test_the_same_place_counts_for_a_call_in_the_cases_language_too(intake_world, grid):
    """A Chinese call in the grid of a Chinese case, with words only somewhat alike: the
    grid counts (it used to count only across languages, so such a call was asked about
    an English case of the street rather than the Chinese ones)."""
    from chengyun.taxonomy.models import Category

    Category.objects.filter(code="0101").update(duplicate_radius_m=3000)
    case = pinned_leak(intake_world)
    call = submit(ReportInput(channel="hotline", description="这边好像水管爆了，到处是水", category="0101",
                              area="100101001001")).report
    exp = call.duplicate_explanation
    assert exp["best_case"] == case.number and "text_compared" not in exp
    assert exp["place_by"] == "area" and exp["place"] > 0.5
    assert exp["text"] < 0.6 and call.duplicate == DuplicateOutcome.ASK, exp
