"""A reopened case is the problem back again: the duplicate check counts it from
when it came back to the queue, not from when it was first made, on every path
(the live pipeline, an import, the Open311 worker's batches)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from chengyun.cases import services as case_services
from chengyun.cases.models import Case
from chengyun.clock import simulated
from chengyun.intake.models import DuplicateOutcome, Report
from chengyun.intake.services import ReportInput, submit

from .. import factories as f

LEAK = "水管爆裂，路面一直冒水"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
BACK = T0 + timedelta(days=20)  # far outside any duplicate window of its first life


@pytest.fixture
def reopened(intake_world, staff):
    """A leak handled, closed and reopened twenty days after it was reported."""
    lon, lat = f.centre("100101001")
    with simulated(T0):
        case = submit(ReportInput(channel="web", description=LEAK, category=intake_world.categories["0101"],
                                  lon=lon, lat=lat)).report.case
    assert case.status == "dispatched"
    root = staff["root"]
    with simulated(T0 + timedelta(hours=2)):
        case_services.start_case(Case.objects.get(pk=case.pk), by=root)
        case_services.report_done(Case.objects.get(pk=case.pk), by=root)
        case_services.verify_case(Case.objects.get(pk=case.pk), by=root, ok=True)
    with simulated(BACK):
        case_services.reopen_case(Case.objects.get(pk=case.pk), by=root, reason="又漏水了")
    case = Case.objects.get(pk=case.pk)
    assert case.status == "reopened" and case.waiting_since == BACK
    return case


def test_a_report_soon_after_the_reopening_joins_the_reopened_case(reopened):
    lon, lat = f.centre("100101001")
    with simulated(BACK + timedelta(hours=1)):
        report = submit(ReportInput(channel="web", description="水管又爆裂了，路面一直在冒水", lon=lon, lat=lat)).report
    assert report.duplicate == DuplicateOutcome.ATTACHED and report.case_id == reopened.pk
    assert report.duplicate_explanation["time"] > 0.9  # an hour after it came back, not twenty days


def test_an_import_finds_the_reopened_case(reopened, tmp_path):
    lon, lat = f.centre("100101001")
    path = tmp_path / "again.jsonl"
    path.write_text(json.dumps({"external_id": "A1", "description": "水管又爆裂了，路面一直在冒水", "lon": lon,
                                "lat": lat, "received_at": (BACK + timedelta(hours=1)).isoformat()},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    call_command("import_reports", str(path), stdout=open("/dev/null", "w"))
    report = Report.objects.get(external_id="A1")
    assert report.duplicate == DuplicateOutcome.ATTACHED and report.case_id == reopened.pk


def submit_received(lon, lat, text) -> str:
    from chengyun.intake.services import receive

    return receive(ReportInput(channel="open311", description=text, lon=lon, lat=lat, source="test")).report.number


def worker_sees_the_case_come_back(intake_world, settings, *, close_first, bring_back) -> None:
    """A leak made at T0 (closed at once if ``close_first``); the Open311 worker
    loads its open cases shortly before BACK; ``bring_back(case)`` at BACK; a
    report half an hour later joins the case, counted from its return."""
    from chengyun.intake import received

    settings.INTAKE_QUEUE = "worker"
    received._cached[0] = None
    try:
        lon, lat = f.centre("100101001")
        with simulated(T0):
            case = submit(ReportInput(channel="web", description=LEAK, category=intake_world.categories["0101"],
                                      lon=lon, lat=lat)).report.case
        with simulated(T0 + timedelta(hours=2)):
            close_first(case)
        with simulated(BACK - timedelta(minutes=5)):  # the worker's first batch, the case long out of its window
            submit_received(lon + 0.05, lat, "路灯不亮")
            received.process_received()
        with simulated(BACK):
            bring_back(Case.objects.get(pk=case.pk))
        with simulated(BACK + timedelta(minutes=30)):
            number = submit_received(lon, lat, "水管又爆裂了，路面一直在冒水")
            received.process_received()
        report = Report.objects.get(number=number)
        assert report.duplicate == DuplicateOutcome.ATTACHED and report.case_id == case.pk
    finally:
        received._cached[0] = None


def test_the_open311_worker_sees_a_case_reopened_since_it_loaded_its_open_cases(intake_world, staff, settings):
    root = staff["root"]

    def close(case):
        for act in (case_services.start_case, case_services.report_done):
            act(Case.objects.get(pk=case.pk), by=root)
        case_services.verify_case(Case.objects.get(pk=case.pk), by=root, ok=True)

    worker_sees_the_case_come_back(
        intake_world, settings, close_first=close,
        bring_back=lambda case: case_services.reopen_case(case, by=root, reason="又漏水了"))


def test_the_open311_worker_sees_a_case_returned_since_it_loaded_its_open_cases(intake_world, staff, settings):
    """Returned by a department (back in the dispatcher's queue) days after it was made."""
    worker_sees_the_case_come_back(
        intake_world, settings, close_first=lambda case: None,
        bring_back=lambda case: case_services.return_case(case, by=staff["root"], reason="不是我们的管道"))
