"""Registering a case from the console form (works without JavaScript)."""

from __future__ import annotations

import pytest

from chengyun.audit.models import AuditRecord
from chengyun.cases.models import Case
from chengyun.org.models import Role

from .. import factories as f

pytestmark = pytest.mark.django_db


def test_operator_registers_a_located_case(client, world):
    operator = f.make_user(username="op", role=Role.OPERATOR)
    client.force_login(operator)
    page = client.get("/console/new/")
    assert page.status_code == 200 and 'name="title"' in page.content.decode()
    lon, lat = f.centre("100101002")
    response = client.post("/console/new/", {
        "title": "Burst main on the corner", "description": "water everywhere", "category": "0101",
        "lon": str(lon), "lat": str(lat), "address": "corner", "channel": "hotline",
    })
    case = Case.objects.get(title="Burst main on the corner")
    assert response.status_code == 302 and response["Location"].endswith(f"/console/cases/{case.number}/")
    assert case.area.code.startswith("100101002") and case.category.code == "0101" and case.channel == "hotline"
    assert case.status == "new" and case.created_by == operator
    assert AuditRecord.objects.filter(action="case.create", object_id=str(case.pk)).count() == 1
    # the confirmation travels to the case page (messages are stored only when used: chengyun/messages.py)
    assert f"Case {case.number} registered." in client.get(response["Location"]).content.decode()
    assert f"Case {case.number} registered." not in client.get(response["Location"]).content.decode()


def test_bad_input_names_the_field_and_stores_nothing(client, world):
    client.force_login(f.make_user(username="op", role=Role.OPERATOR))
    before = Case.objects.count()
    page = client.post("/console/new/", {"title": "", "lon": "121.4"}).content.decode()
    assert Case.objects.count() == before
    assert 'aria-invalid="true"' in page
    page = client.post("/console/new/", {"title": "x", "lon": "east", "lat": "31"}).content.decode()
    assert "must be numbers" in page and Case.objects.count() == before


def test_roles_that_do_not_register_cases_get_404(client, world):
    client.force_login(f.make_user(username="boss", role=Role.LEADER))
    assert client.get("/console/new/").status_code == 404
