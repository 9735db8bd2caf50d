from __future__ import annotations

from chengyun.audit.services import verify_chain
from chengyun.cases.workflow import CaseStatus
from chengyun.intake.services import ReportInput, submit

from .. import factories as f


def test_confident_report_is_classified_located_and_routed(intake_world):
    lon, lat = f.centre("100101001")
    res = submit(ReportInput(channel="web", description="水管爆裂，路面一直冒水", lon=lon, lat=lat))
    report = res.report
    assert res.created
    assert report.number.startswith("R")
    assert report.category.code == "0101"
    assert report.confidence > 0.5
    assert report.classification["terms"], "the terms that drove the decision are stored"
    case = report.case
    assert case.status == CaseStatus.DISPATCHED
    assert case.lead.department == intake_world.dept("water", "100101")
    assert case.route_explanation["classification"]["decided_by"] == "classifier"
    assert list(verify_chain()) == []
