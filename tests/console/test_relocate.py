"""Correcting where a case is (更正位置): an address that named only a district
leaves a case no rule can route; a dispatcher moves it into its street (or gives a
point) and the route follows. Recorded on the timeline and in the audit log."""

from __future__ import annotations

import pytest

from chengyun.areas.models import AreaLevel
from chengyun.audit.models import AuditRecord
from chengyun.cases.models import Case
from chengyun.intake.services import ReportInput, submit
from chengyun.org.models import Role

from .. import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def district_case(intake_world):
    """Street lights are the street office's (a rule at street level): a call that names
    only its district cannot be routed."""
    office = f.make_department_kind(kind="street-office")
    f.make_department(code="OFFICE-1001", name="街道1001办事处", kind=office, area=intake_world.areas["100101001"])
    lights = f.make_category(code="0901", name="路灯")  # a group of its own: only the street's rule routes it
    f.make_routing_rule(category=lights, lead_kind=office, level=AreaLevel.objects.get(key="street"))
    report = submit(ReportInput(channel="hotline", description="路灯不亮 晚上很黑", category="0901",
                                address="区1")).report
    case = report.case
    assert case.area.code == "100101" and case.status == "new", "no rule routes it: it waits for a dispatcher"
    return case


def test_a_dispatcher_moves_a_case_into_its_street_and_the_route_follows(client, staff, district_case):
    from chengyun.cases import services

    services.accept_case(district_case, by=staff["dispatcher"])
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{district_case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Correct the location" in page and '<option value="100101001">' in page
    # No rule finds a department here: the lead must be chosen, not "as suggested".
    assert "— choose the lead department —" in page and 'name="lead" required' in page

    response = client.post(f"/console/cases/{district_case.number}/relocate/", {"area": "100101001", "note": "caller"},
                           HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302
    case = Case.objects.get(pk=district_case.pk)
    assert case.area.code == "100101001" and case.area_path.endswith(f"/{case.area_id}/")
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Moved: District 1 → Street 1001" in page or "Moved: 区1 → 街道1001" in page
    assert "as suggested: 街道1001办事处" in page
    record = AuditRecord.objects.get(action="case.relocate")
    assert (record.data["from"], record.data["to"], record.data["note"]) == ("100101", "100101001", "caller")


def test_a_point_places_the_case_and_bad_points_are_refused_naming_the_field(client, staff, district_case):
    client.force_login(staff["dispatcher"])
    url = f"/console/cases/{district_case.number}/relocate/"
    refused = client.post(url, {"lon": "east", "lat": "31", "note": "caller"}, HTTP_ACCEPT_LANGUAGE="en")
    page = refused.content.decode()
    # Said in the card, the field marked, what was typed kept.
    assert refused.status_code == 400 and '<p class="error" role="alert" id="relocate-error">Longitude: “east” is not a number.' in page
    assert 'name="lon" inputmode="decimal" size="10" value="east" aria-invalid="true"' in page and 'value="caller"' in page
    page = client.post(url, {"lon": "10", "lat": "10"}, HTTP_ACCEPT_LANGUAGE="en", follow=True).content.decode()
    assert "This point is outside the city&#x27;s areas." in page
    page = client.post(url, {"area": "999"}, HTTP_ACCEPT_LANGUAGE="en", follow=True).content.decode()
    assert "No area has the code 999." in page
    lon, lat = f.centre("100101001")
    page = client.post(url, {"area": "100101002", "lon": str(lon), "lat": str(lat)}, HTTP_ACCEPT_LANGUAGE="en",
                       follow=True).content.decode()
    assert "Choose an area or give a point, not both" in page
    assert Case.objects.get(pk=district_case.pk).area.code == "100101", "nothing changed"

    lon, lat = f.centre("100101001")
    client.post(url, {"lon": str(lon), "lat": str(lat)})
    case = Case.objects.get(pk=district_case.pk)
    assert case.area.code == "100101001" and (case.lon, case.lat) == (lon, lat)
    # Moved to another street of the district: the point, not in it, is dropped.
    client.post(url, {"area": "100101002"})
    case = Case.objects.get(pk=district_case.pk)
    assert case.area.code == "100101002" and case.lon is None
    again = client.post(url, {"area": "100101002"}, HTTP_ACCEPT_LANGUAGE="en")
    assert again.status_code == 400 and "The case is already there (Street 1002)." in again.content.decode()


def test_only_the_desks_in_scope_move_only_waiting_cases(client, staff, district_case, intake_world):
    elsewhere = f.make_user(username="north-dispatcher", role=Role.DISPATCHER, area=intake_world.areas["100101"])
    client.force_login(elsewhere)
    page = client.post(f"/console/cases/{district_case.number}/relocate/", {"area": "100102001"},
                       HTTP_ACCEPT_LANGUAGE="en", follow=True).content.decode()
    assert "is outside your area" in page
    assert Case.objects.get(pk=district_case.pk).area.code == "100101"

    client.force_login(staff["water"])  # a department's handler: not theirs to move
    assert "Correct the location" not in client.get(f"/console/cases/{district_case.number}/").content.decode()
    client.force_login(staff["leader"])  # sees every case, moves none
    page = client.post(f"/console/cases/{district_case.number}/relocate/", {"area": "100101001"},
                       HTTP_ACCEPT_LANGUAGE="en", follow=True)
    assert "You may not move this case." in page.content.decode()
    assert Case.objects.get(pk=district_case.pk).area.code == "100101"

    from chengyun.areas.models import Area
    from chengyun.cases import services

    root = staff["root"]
    services.relocate_case(district_case, by=root, area=Area.objects.get(code="100101001"))
    services.accept_case(Case.objects.get(pk=district_case.pk), by=root)
    services.dispatch_case(Case.objects.get(pk=district_case.pk), by=root)
    client.force_login(staff["dispatcher"])
    page = client.post(f"/console/cases/{district_case.number}/relocate/", {"area": "100101002"},
                       HTTP_ACCEPT_LANGUAGE="en", follow=True).content.decode()
    assert "Only a case that is not yet dispatched can be moved: recall it first." in page
    assert Case.objects.get(pk=district_case.pk).area.code == "100101001"


def test_the_api_moves_a_case_too(client, staff, district_case):
    client.force_login(staff["dispatcher"])
    url = f"/api/v1/cases/{district_case.number}/actions/relocate"
    bad = client.post(url, {"area": "999"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert bad.status_code == 400 and bad.json()["field"] == "area", bad.content
    body = client.post(url, {"area": "100101001", "reason": "the caller named the street"},
                       content_type="application/json").json()
    assert [a["code"] for a in body["area"]][-1] == "100101001"
    assert Case.objects.get(pk=district_case.pk).area.code == "100101001"


def test_the_hotline_panel_says_a_district_only_address_waits_for_a_dispatcher(client, staff, district_case,
                                                                                 settings):
    """The rule is at street level: the panel does not promise a route it cannot make."""
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # the operator's pick decides, undisputed
    client.force_login(staff["operator"])
    panel = client.post("/console/hotline/suggest/", {"description": "街角那个东西一直坏着", "address": "区1 人民路5号",
                                                       "category": "0901"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No routing rule finds its department for District 1: a dispatcher will send the call on" in panel
    assert "goes by the routing rules to its department at once" not in panel
    panel = client.post("/console/hotline/suggest/", {"description": "街角那个东西一直坏着", "address": "区1 街道1001 人民路5号",
                                                       "category": "0901"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "goes by the routing rules to its department at once" in panel, "with its street it goes at once"
