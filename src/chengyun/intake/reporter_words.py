"""A case as its reporter would say it: short labels and sentences for each
status and step, without the staff's words. The tracking page and the
messages to reporters (:mod:`.notify`) use the same ones."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from chengyun.cases.workflow import CaseStatus

# The case status as a reporter would say it: a short label and a sentence.
STATUS_LABELS = {
    CaseStatus.NEW: pgettext_lazy("report status", "Received"),
    CaseStatus.ACCEPTED: _("Accepted"),
    CaseStatus.DISPATCHED: _("With the department"),
    CaseStatus.IN_PROGRESS: _("Being fixed"),
    CaseStatus.AWAITING_VERIFICATION: _("Being checked"),
    CaseStatus.CLOSED: _("Fixed"),
    CaseStatus.RATED: _("Fixed"),
    CaseStatus.REJECTED: _("Not taken up"),
    CaseStatus.MERGED: _("Merged"),
    CaseStatus.REOPENED: _("Opened again"),
}
STATUS_WORDS = {
    CaseStatus.NEW: _("Received. The city operations centre will look at it soon."),
    CaseStatus.ACCEPTED: _("Accepted. It will be sent to the department that handles it."),
    CaseStatus.DISPATCHED: _("Sent to the department that handles it."),
    CaseStatus.IN_PROGRESS: _("The department is working on it."),
    CaseStatus.AWAITING_VERIFICATION: _("The department says it is fixed. Someone will check on site."),
    CaseStatus.CLOSED: _("Fixed and closed."),
    # Every reporter of the case reads it, not only the one who was called back (who
    # may not have been reached): the timeline says what the callback was.
    CaseStatus.RATED: _("Fixed and closed."),
    CaseStatus.REJECTED: _("Not taken up: the city could not act on this report."),
    CaseStatus.MERGED: _("Handled together with other reports of the same problem."),
    CaseStatus.REOPENED: _("Opened again: work on it continues."),
}

# Timeline entries as a reporter would say them (status changes only).
STEP_WORDS = {
    "create": _("Report received"),
    "accept": _("Accepted by the city operations centre"),
    "reject": _("Not taken up"),
    "merge": _("Handled together with other reports of the same problem"),
    "unmerge": _("Handled on its own again"),
    "self_dispose": _("Fixed on the spot by a city inspector"),
    "dispatch": _("Sent to the department that handles it"),
    "return": _("Being sent to another department"),
    "recall": _("Being sent to another department"),
    "start": _("Work started"),
    "report_done": _("The department reports the work done"),
    "verify_ok": _("Checked on site: fixed"),
    "verify_fail": _("Checked on site: not fixed yet, work continues"),
    "close": _("Closed"),
    "callback": _("A reporter was asked whether it was fixed"),
    "reopen": _("Opened again"),
}
# Where one action may lead to different statuses.
STEP_WORDS_BY_STATUS = {
    ("callback", CaseStatus.REOPENED): _("Opened again: a reporter said it was not fixed"),
}


def step_words(entry) -> str | None:
    """A timeline entry's status change as a reporter would say it, or None."""
    if entry.action == "callback" and (entry.data or {}).get("satisfaction") == "unreachable":
        return _("The city tried to reach a reporter to ask whether it was fixed")
    return STEP_WORDS_BY_STATUS.get((entry.action, entry.to_status)) or STEP_WORDS.get(entry.action)
