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


def test_a_call_in_english_about_the_street_asks_a_dispatcher(intake_world, grid):
    case = pinned_leak(intake_world)
    call = submit(ReportInput(channel="hotline", description="A water pipe burst, water all over the road",
                              category="0101", area="100101001")).report
    exp = call.duplicate_explanation
    assert call.duplicate == DuplicateOutcome.ASK and exp["best_case"] == case.number
    assert exp["text_compared"] is False and exp["place"] == 0.5 and exp["place_by"] == "area"


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
