"""Reporters' personal data: masked by default, a full view is audited.

Who may see a contact in full: the operators who take calls and call back
(operator role over the case's area) and the handlers of a department that
holds a part of the case. Everyone else who can see the case sees it masked.
Open311 and the public pages never show it at all.
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.cases.errors import CaseForbidden, CaseInvalid
from chengyun.org import scope
from chengyun.org.models import Role

from .models import Report, ReporterContact


def mask_phone(phone: str) -> str:
    """13812341234 -> 138****1234. Shorter numbers (landlines, extensions)
    keep less: at most a third of their digits, so they cannot be guessed."""
    phone = (phone or "").strip()
    if not phone:
        return ""
    if len(phone) >= 11:
        return phone[:3] + "****" + phone[-4:]
    shown = len(phone) // 3
    if shown < 2:
        return "*" * len(phone)
    head = shown - 2  # 0 or 1 leading characters, then the last two
    return phone[:head] + "*" * (len(phone) - shown) + phone[-2:]


def mask_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        return ""
    if " " in name:  # "Wang Fang" -> "W***"
        return name[0] + "***"
    return name[0] + "*" * max(1, len(name) - 1)


def mask_email(email: str) -> str:
    email = (email or "").strip()
    if "@" not in email:
        return "*" * len(email)
    user, domain = email.split("@", 1)
    return (user[:1] + "***@" + domain) if user else "***@" + domain


def mask_id(value: str) -> str:
    value = (value or "").strip()
    return value[:2] + "***" if value else ""


# Personal data people write into free text (a caller's number dictated to
# the hotline, "call me on …" in a web report): what the public sees of a
# description or an address has it masked. Chinese mobile numbers (+86,
# spaces, dots or dashes allowed), landlines with an area code (brackets
# allowed), ID card numbers (18 characters), emails; full-width digits count
# as digits. Digits run into other digits or decimals are left alone, so
# that tracking numbers, dates, coordinates and house numbers stay as written.
_IN_TEXT = re.compile(
    r"(?P<id>(?<![0-9A-Za-z.])\d{6}(?:18|19|20)\d{2}[01]\d[0-3]\d\d{3}[0-9Xx](?![0-9A-Za-z]))"
    r"|(?P<mobile>(?<![\d+.])(?:\+?86[ -]?)?1[3-9]\d(?:[ .-]?\d{4}){2}(?!\d|\.\d))"
    r"|(?P<landline>(?<![\d.])(?:\(0\d{2,3}\)|0\d{2,3})[ -]?\d{7,8}(?!\d|\.\d))"
    # The local part bounded and ASCII: a scan from every position would be quadratic in long runs of letters.
    r"|(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９＋（）－", "0123456789+()-")  # one character for one


def _mask_found(text: str, kind: str) -> str:
    if kind == "email":
        return mask_email(text)
    if kind == "id":
        return text[:6] + "*" * 8 + text[-4:]
    return mask_phone(re.sub(r"[ .()-]", "", text))


def redact_text(text: str | None) -> str | None:
    """``text`` with the phone numbers, ID card numbers and emails in it
    masked (138****1234): for what the public sees of reports."""
    if not text:
        return text
    scan = text.translate(_FULL_WIDTH_DIGITS)  # the same length: positions in it are positions in text
    out, last = [], 0
    for m in _IN_TEXT.finditer(scan):
        out += [text[last:m.start()], _mask_found(m.group(0), m.lastgroup)]
        last = m.end()
    return "".join(out) + text[last:] if out else text


def masked(contact: ReporterContact | None) -> dict:
    if contact is None:
        return {}
    return {
        "name": mask_name(contact.name), "phone": mask_phone(contact.phone), "email": mask_email(contact.email),
        "device_id": mask_id(contact.device_id), "account_id": mask_id(contact.account_id), "masked": True,
    }


def full(contact: ReporterContact) -> dict:
    return {
        "name": contact.name, "phone": contact.phone, "email": contact.email,
        "device_id": contact.device_id, "account_id": contact.account_id, "masked": False,
    }


def can_reveal(user, report: Report) -> bool:
    case = report.case
    if case is None or not user or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    if scope.can_act(user, case, {Role.OPERATOR}):
        return True
    # A department that holds a part of the case now: not one that has returned it
    # (it may still read the case's history, but it no longer calls anyone back).
    holding = {part.department_id for part in case.assignments.all() if part.active}
    return bool(scope.handler_departments(user, case) & holding)


def reveal_contact(report: Report, *, by, reason: str) -> dict:
    """The full contact details, for a person who must call back. Audited."""
    if report.contact is None:
        raise CaseInvalid(_("This report has no contact details."), field="contact")
    if not can_reveal(by, report):
        raise CaseForbidden(_("You may not see this reporter's contact details."))
    reason = (reason or "").strip()
    if not reason:
        raise CaseInvalid(_("Say why you need the contact details (for example: call back)."), field="reason")
    record("contact.view", actor=by, obj=report, data={
        "report": report.number, "case": report.case.number if report.case else None, "reason": reason[:200],
    })
    return full(report.contact)
