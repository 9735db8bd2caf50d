"""The case flow (发现 → 立案 → 派遣 → 处置 → 核查 → 结案 → 评价) as a table.

``ACTIONS`` says, for every action, from which statuses it may be taken,
which status it leads to and which roles may take it. ``TRANSITIONS`` is
derived from it and is what the property tests hold the services to.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.org.models import Role


class CaseStatus(models.TextChoices):
    NEW = "new", _("New")
    ACCEPTED = "accepted", _("Accepted")
    REJECTED = "rejected", _("Rejected")
    MERGED = "merged", _("Merged")
    DISPATCHED = "dispatched", _("Dispatched")
    IN_PROGRESS = "in_progress", _("In progress")
    AWAITING_VERIFICATION = "awaiting_verification", _("Awaiting verification")
    CLOSED = "closed", _("Closed")
    RATED = "rated", _("Rated")
    REOPENED = "reopened", _("Reopened")


S = CaseStatus
OPEN_STATUSES = frozenset({S.NEW, S.ACCEPTED, S.DISPATCHED, S.IN_PROGRESS, S.AWAITING_VERIFICATION, S.REOPENED})
HANDLING_STATUSES = frozenset({S.DISPATCHED, S.IN_PROGRESS})
# New, accepted (also when a department returned it or a dispatcher recalled it) or
# reopened: a dispatcher's to send on, within settings.DISPATCH_HOURS (派单时限).
WAITING_FOR_DISPATCH = frozenset({S.NEW, S.ACCEPTED, S.REOPENED})
FINAL_STATUSES = frozenset({S.REJECTED, S.RATED})


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    sources: frozenset
    targets: frozenset  # usually one; an empty set means "status unchanged"
    roles: frozenset
    needs_reason: bool = False


def _a(name, label, sources, targets, roles, needs_reason=False):
    return Action(name, label, frozenset(sources), frozenset(targets), frozenset(r.value for r in roles), needs_reason)


R = Role
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        _a("accept", _("Accept"), {S.NEW}, {S.ACCEPTED}, {R.OPERATOR, R.DISPATCHER, R.ADMIN}),
        _a("reject", _("Reject as invalid"), {S.NEW, S.ACCEPTED}, {S.REJECTED}, {R.OPERATOR, R.DISPATCHER, R.ADMIN}, True),
        _a("merge", _("Merge into another case"), {S.NEW, S.ACCEPTED}, {S.MERGED}, {R.OPERATOR, R.DISPATCHER, R.ADMIN}),
        _a("unmerge", _("Undo merge"), {S.MERGED}, {S.NEW}, {R.OPERATOR, R.DISPATCHER, R.ADMIN}, True),
        _a("self_dispose", _("Closed on the spot (自行处置)"), {S.NEW}, {S.CLOSED}, {R.INSPECTOR, R.ADMIN}, True),
        _a("dispatch", _("Dispatch"), {S.ACCEPTED, S.REOPENED}, {S.DISPATCHED}, {R.DISPATCHER, R.ADMIN}),
        _a("return", _("Return (not ours)"), {S.DISPATCHED, S.IN_PROGRESS}, {S.ACCEPTED}, {R.HANDLER, R.ADMIN}, True),
        # 改派: the dispatcher's override of a route (the platform's automatic one or a
        # person's): the case comes back, to be reclassified and dispatched again.
        _a("recall", _("Recall to re-dispatch (改派)"), {S.DISPATCHED, S.IN_PROGRESS}, {S.ACCEPTED},
           {R.DISPATCHER, R.ADMIN}, True),
        _a("request_extension", _("Request extension"), HANDLING_STATUSES, set(), {R.HANDLER, R.ADMIN}, True),
        _a("approve_extension", _("Approve extension"), HANDLING_STATUSES, set(), {R.SUPERVISOR, R.ADMIN}),
        _a("deny_extension", _("Deny extension"), HANDLING_STATUSES, set(), {R.SUPERVISOR, R.ADMIN}, True),
        _a("start", _("Start handling"), {S.DISPATCHED, S.IN_PROGRESS}, {S.IN_PROGRESS}, {R.HANDLER, R.ADMIN}),
        _a("report_done", _("Report done"), {S.IN_PROGRESS}, {S.AWAITING_VERIFICATION}, {R.HANDLER, R.ADMIN}),
        _a("verify_ok", _("Verified: fixed"), {S.AWAITING_VERIFICATION}, {S.CLOSED}, {R.INSPECTOR, R.SUPERVISOR, R.ADMIN}),
        _a("verify_fail", _("Verified: not fixed"), {S.AWAITING_VERIFICATION}, {S.IN_PROGRESS},
           {R.INSPECTOR, R.SUPERVISOR, R.ADMIN}, True),
        _a("close", _("Close without site check"), {S.AWAITING_VERIFICATION}, {S.CLOSED},
           {R.SUPERVISOR, R.DISPATCHER, R.ADMIN}, True),
        _a("callback", _("Record satisfaction callback"), {S.CLOSED}, {S.RATED, S.REOPENED}, {R.OPERATOR, R.ADMIN}),
        _a("reopen", _("Reopen"), {S.CLOSED, S.RATED}, {S.REOPENED}, {R.SUPERVISOR, R.OPERATOR, R.ADMIN}, True),
        _a("escalate", _("Escalate (督办)"), OPEN_STATUSES, set(), {R.SUPERVISOR, R.ADMIN}),
    ]
}

# Actions the platform itself may take (the actor is a named system process,
# not a person): escalation by the deadline sweep, and acceptance and dispatch
# by the intake pipeline when the classifier is confident and a rule matches.
AUTOMATIC_ACTIONS = frozenset({"escalate", "accept", "dispatch"})

TRANSITIONS: dict[str, frozenset] = {s: frozenset() for s in S}
for _action in ACTIONS.values():
    for _src in _action.sources:
        TRANSITIONS[_src] = TRANSITIONS[_src] | (_action.targets or {_src})


def actions_from(status: str) -> list[Action]:
    return [a for a in ACTIONS.values() if status in a.sources]
