"""Taking case actions through the JSON API, checking what each one writes."""

from __future__ import annotations

from chengyun.audit.models import AuditRecord
from chengyun.cases.models import Case, TimelineEntry


def action_url(number: str, action: str) -> str:
    return f"/api/v1/cases/{number}/actions/{action}"


def act(client, user, case: Case, action: str, *, expect: int = 200, **body) -> dict:
    """POST one action as ``user``; assert the status code and that a success wrote
    exactly one timeline entry and one audit record (and a failure none)."""
    client.force_login(user)
    timeline_before = TimelineEntry.objects.filter(case=case).count()
    audit_before = AuditRecord.objects.count()
    version_before = Case.objects.values_list("version", flat=True).get(pk=case.pk)
    response = client.post(action_url(case.number, action), data=body, content_type="application/json")
    assert response.status_code == expect, response.content
    timeline = TimelineEntry.objects.filter(case=case).order_by("-at", "-pk")
    if expect == 200:
        assert timeline.count() == timeline_before + 1
        assert AuditRecord.objects.count() == audit_before + 1
        entry, rec = timeline.first(), AuditRecord.objects.order_by("-seq").first()
        assert entry.action.startswith(action) and entry.actor_name == user.get_username()
        assert rec.action == f"case.{entry.action}" and rec.actor == user.get_username()
        assert rec.object_type == "cases.case" and rec.object_id == str(case.pk)
    else:
        assert timeline.count() == timeline_before
        assert AuditRecord.objects.count() == audit_before
        assert Case.objects.values_list("version", flat=True).get(pk=case.pk) == version_before
    return response.json()
