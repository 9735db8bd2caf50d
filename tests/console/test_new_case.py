"""Registering a case from the console form (works without JavaScript)."""

from __future__ import annotations

import re

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.cases.models import Case
from chengyun.intake.models import Report
from chengyun.org.models import Role

from .. import factories as f

pytestmark = pytest.mark.django_db


def test_operator_registers_a_located_case(client, world):
    operator = f.make_user(username="op", role=Role.OPERATOR)
    client.force_login(operator)
    page = client.get("/console/new/").content.decode()
    assert 'name="title"' in page
    # People's doors only: a sensor alarm or a smart discovery is not registered by hand.
    assert 'value="hotline"' in page and 'value="sensor"' not in page and 'value="discovery"' not in page
    lon, lat = f.centre("100101002")
    token = re.search(r'name="token" value="([^"]+)"', page)[1]
    form = {"token": token, "title": "Burst main on the corner", "description": "water everywhere",
            "category": "0101", "lon": str(lon), "lat": str(lat), "address": "corner", "channel": "hotline"}
    response = client.post("/console/new/", form)
    case = Case.objects.get(title="Burst main on the corner")
    assert response.status_code == 302 and response["Location"].endswith(f"/console/cases/{case.number}/")
    assert case.area.code.startswith("100101002") and case.category.code == "0101" and case.channel == "hotline"
    assert case.created_by == operator
    report = Report.objects.get(case=case)
    assert report.created_by == operator and report.category_given, "a report, as every door makes"
    assert AuditRecord.objects.filter(action="case.create", object_id=str(case.pk)).count() == 1
    # the confirmation travels to the case page (messages are stored only when used: chengyun/messages.py)
    assert f"Case {case.number} registered (report {report.number})." in client.get(response["Location"]).content.decode()
    assert client.post("/console/new/", form).status_code == 302 and Case.objects.count() == 1, "sent twice: one case"


def test_a_case_with_only_an_address_is_placed_and_classified(client, intake_world):
    client.force_login(f.make_user(username="op", role=Role.OPERATOR))
    response = client.post("/console/new/", {"token": "t-1", "title": "路灯坏了", "description": "晚上很黑",
                                            "address": "区1 街道1001 和平路12号", "channel": "hotline"})
    assert response.status_code == 302
    case = Case.objects.get()
    assert case.area.code == "100101001", "placed by the address"
    assert case.category.code == "0102", "classified by the pipeline"


def test_bad_input_names_the_field_and_stores_nothing(client, world):
    client.force_login(f.make_user(username="op", role=Role.OPERATOR))
    before = Case.objects.count()
    response = client.post("/console/new/", {"title": "", "description": "", "lon": "121.4"},
                           HTTP_ACCEPT_LANGUAGE="en")
    page = response.content.decode()
    assert response.status_code == 400 and Case.objects.count() == before
    field = re.search(r'<(?:input|textarea) id="f-(\w+)"[^>]*aria-invalid="true"', page)
    assert field and field[1] in ("desc", "lon", "lat"), "the field at fault is marked"
    assert re.search(r'<span id="e-desc" class="error">[^<]+</span>', page) or "latitude" in page.lower()
    response = client.post("/console/new/", {"title": "x", "description": "y", "channel": "sensor"},
                           HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400 and "Choose one of the channels listed." in response.content.decode()
    assert Case.objects.count() == before
    page = client.post("/console/new/", {"title": "x", "lon": "east", "lat": "31"}).content.decode()
    assert "must be numbers" in page and Case.objects.count() == before


def test_roles_that_do_not_register_cases_get_404(client, world):
    client.force_login(f.make_user(username="boss", role=Role.LEADER))
    assert client.get("/console/new/").status_code == 404
