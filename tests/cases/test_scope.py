"""Who sees and acts on which case: area subtrees, departments, tokens."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from chengyun.cases.models import Case
from chengyun.org.models import ApiToken, Role

from .. import factories as f
from .api_actions import action_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_districts(world, admin_user):
    """A dispatcher of district 100101 (A), one case in A and one in 100104 (B)."""
    dispatcher_a = f.make_user(username="disp_a", role=Role.DISPATCHER, area=world.areas["100101"])
    case_a = f.make_case(title="in A", category=world.categories["0101"], at="100101002", by=admin_user)
    case_b = f.make_case(title="in B", category=world.categories["0101"], at="100104001", by=admin_user)
    return dispatcher_a, case_a, case_b


def test_dispatcher_cannot_read_another_districts_case(client, two_districts):
    dispatcher_a, case_a, case_b = two_districts
    client.force_login(dispatcher_a)
    assert client.get(f"/api/v1/cases/{case_a.number}").status_code == 200
    assert client.get(f"/api/v1/cases/{case_b.number}").status_code == 404


def test_dispatcher_cannot_act_on_another_districts_case(client, two_districts):
    dispatcher_a, case_a, case_b = two_districts
    client.force_login(dispatcher_a)
    response = client.post(action_url(case_b.number, "accept"), data={}, content_type="application/json")
    assert response.status_code == 404
    assert Case.objects.get(pk=case_b.pk).status == "new"
    response = client.post(action_url(case_a.number, "accept"), data={}, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "accepted"


def test_dispatcher_cannot_merge_into_another_districts_case(client, two_districts):
    dispatcher_a, case_a, case_b = two_districts
    client.force_login(dispatcher_a)
    response = client.post(action_url(case_a.number, "merge"), data={"into": case_b.number},
                           content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "into"
    assert Case.objects.get(pk=case_a.pk).status == "new"


def test_console_hides_another_districts_case(client, two_districts):
    dispatcher_a, case_a, case_b = two_districts
    client.force_login(dispatcher_a)
    assert client.get(f"/console/cases/{case_a.number}/").status_code == 200
    assert client.get(f"/console/cases/{case_b.number}/").status_code == 404
    assert client.post(f"/console/cases/{case_b.number}/act/accept/", {}).status_code == 404
    assert Case.objects.get(pk=case_b.pk).status == "new"
    queue = client.get("/console/").content.decode()
    assert case_a.number in queue and case_b.number not in queue


def test_list_api_lists_only_cases_in_scope(client, two_districts, world, admin_user):
    dispatcher_a, case_a, case_b = two_districts
    other_in_a = f.make_case(title="also in A", at="100101001", by=admin_user)
    client.force_login(dispatcher_a)
    body = client.get("/api/v1/cases/").json()
    assert body["count"] == 2
    assert {c["number"] for c in body["items"]} == {case_a.number, other_in_a.number}

    # Filters never widen the scope.
    assert client.get("/api/v1/cases/", {"area": "100104"}).json()["count"] == 0
    assert client.get("/api/v1/cases/", {"q": case_b.number}).json()["count"] == 0

    client.force_login(admin_user)
    assert client.get("/api/v1/cases/").json()["count"] == 3


def test_handler_sees_only_cases_of_their_department(client, world, admin_user):
    water_a = world.dept("water", "100101")
    handler = f.make_user(username="h", role=Role.HANDLER, department=water_a)
    mine = f.drive_to(f.make_case(category=world.categories["0101"], at="100101001", by=admin_user),
                      "dispatched", by=admin_user)
    theirs = f.drive_to(f.make_case(category=world.categories["0101"], at="100102001", by=admin_user),
                        "dispatched", by=admin_user)
    # Same district as the handler, but not (yet) dispatched to their department.
    undispatched = f.make_case(category=world.categories["0101"], at="100101001", by=admin_user)

    client.force_login(handler)
    listed = {c["number"] for c in client.get("/api/v1/cases/").json()["items"]}
    assert listed == {mine.number}
    assert client.get(f"/api/v1/cases/{theirs.number}").status_code == 404
    assert client.get(f"/api/v1/cases/{undispatched.number}").status_code == 404
    response = client.post(action_url(theirs.number, "start"), data={}, content_type="application/json")
    assert response.status_code == 404
    response = client.post(action_url(mine.number, "start"), data={}, content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "in_progress"


def test_city_wide_role_without_area_sees_everything(client, two_districts):
    _, case_a, case_b = two_districts
    operator = f.make_user(username="op", role=Role.OPERATOR)
    client.force_login(operator)
    assert {c["number"] for c in client.get("/api/v1/cases/").json()["items"]} == {case_a.number, case_b.number}


def test_user_without_roles_sees_nothing(client, two_districts):
    _, _case_a, case_b = two_districts
    client.force_login(f.make_user(username="nobody"))
    assert client.get("/api/v1/cases/").json() == {"count": 0, "items": []}
    assert client.get(f"/api/v1/cases/{case_b.number}").status_code == 404


# --------------------------------------------------------------------------- authentication


def create_token(username: str) -> str:
    out = io.StringIO()
    call_command("create_token", username, "--name", "script", stdout=out)
    return out.getvalue().strip()


def test_bearer_token_from_create_token(client, two_districts):
    dispatcher_a, case_a, case_b = two_districts
    key = create_token("disp_a")
    assert key.startswith("cy_") and len(key) > 30
    token = ApiToken.objects.get(user=dispatcher_a)
    assert token.name == "script" and key not in token.key_hash and key[3:11] == token.prefix

    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    body = client.get("/api/v1/cases/", **auth).json()
    assert [c["number"] for c in body["items"]] == [case_a.number]  # the token acts as its user, in scope
    response = client.post(action_url(case_a.number, "accept"), data={"reason": "via script"},
                           content_type="application/json", **auth)
    assert response.status_code == 200
    assert response.json()["timeline"][-1]["by"] == "disp_a"
    assert client.get(f"/api/v1/cases/{case_b.number}", **auth).status_code == 404


def test_unauthenticated_and_bad_tokens_get_401(client, two_districts):
    _, case_a, _ = two_districts
    assert client.get("/api/v1/cases/").status_code == 401
    assert client.get(f"/api/v1/cases/{case_a.number}").status_code == 401
    assert client.post(action_url(case_a.number, "accept"), data={}, content_type="application/json").status_code == 401
    assert client.get("/api/v1/cases/", HTTP_AUTHORIZATION="Bearer cy_wrong").status_code == 401
    assert Case.objects.get(pk=case_a.pk).status == "new"


def test_revoked_token_and_inactive_user_get_401(client, two_districts):
    dispatcher_a, _, _ = two_districts
    key = create_token("disp_a")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    assert client.get("/api/v1/cases/", **auth).status_code == 200
    dispatcher_a.is_active = False
    dispatcher_a.save()
    assert client.get("/api/v1/cases/", **auth).status_code == 401
    dispatcher_a.is_active = True
    dispatcher_a.save()
    from django.utils import timezone

    ApiToken.objects.update(revoked_at=timezone.now())
    assert client.get("/api/v1/cases/", **auth).status_code == 401


def test_create_token_for_unknown_user_fails(db):
    with pytest.raises(CommandError, match="No user named “ghost”"):
        call_command("create_token", "ghost", stdout=io.StringIO())
