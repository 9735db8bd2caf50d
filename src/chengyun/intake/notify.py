"""Messages to reporters who asked for them (by email, else by SMS).

When the case handling a report changes status in a way a reporter cares
about (sent to a department, work started, fixed, not taken up, merged with
another report, opened again), every report that follows that case gets one
:class:`~chengyun.intake.models.Notification`, written in the same
transaction as the change (nothing is lost): the reports of the case, those
attached to it as duplicates, and those of cases merged into it, received
before the change, whose reporter asked for messages
(``ReporterContact.notify``). The changes made while a report is being taken
in (the case created and dispatched at once) send nothing: the reporter sees
that on the confirmation page.

The worker sends what is due (:func:`send_due`, queued by
:func:`chengyun.intake.tasks.schedule_notifications`): email through
Django's mail backend, SMS as a JSON POST to the city's gateway
(``CHENGYUN_SMS_WEBHOOK_URL``). The address is read from the contact at that
moment, never copied; a failure is tried again later (after 2, 4, 8 …
minutes) and given up after :data:`MAX_ATTEMPTS`. Each batch is one audit
record with the notifications' ids and outcomes, not the addresses. Every
message has a link that stops the messages for that report (:func:`stop_token`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import mail, signing
from django.db import transaction
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from chengyun.audit.services import record
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.clock import now

from .models import Notification, NotificationStatus, Report
from .privacy import redact_text
from .reporter_words import STATUS_LABELS, STATUS_WORDS

log = logging.getLogger(__name__)

# The status changes a reporter is told about.
NOTIFY_STATUSES = frozenset({
    CaseStatus.DISPATCHED, CaseStatus.IN_PROGRESS, CaseStatus.CLOSED, CaseStatus.REJECTED, CaseStatus.MERGED,
    CaseStatus.REOPENED,
})
MAX_ATTEMPTS = 6
BATCH = 100
LEASE = timedelta(minutes=10)  # a message being sent is not picked again this long (another worker, a crash)
STOP_SALT = "chengyun.intake.notify.stop"

_quiet = contextvars.ContextVar("chengyun_notify_quiet", default=False)


@contextlib.contextmanager
def quiet():
    """No messages for the status changes made inside (a report being taken in)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


def sms_enabled() -> bool:
    return bool(settings.SMS_WEBHOOK_URL)


def medium_for(email: str, phone: str) -> str | None:
    """How a reporter with these details is reached: email first, else SMS
    when the city has a gateway; None when neither."""
    if email:
        return Notification.Medium.EMAIL
    return Notification.Medium.SMS if phone and sms_enabled() else None


# --------------------------------------------------------------------------- writing them


def on_timeline_entry(sender, instance, created: bool, raw: bool = False, **_kwargs) -> None:
    """``post_save`` of a timeline entry: a message for every report following
    the case whose reporter asked for one, in the change's transaction."""
    if not created or raw or _quiet.get() or instance.to_status not in NOTIFY_STATUSES \
            or instance.to_status == instance.from_status:
        return
    cases = following_cases(instance.case_id)
    reports = (Report.objects.filter(case_id__in=cases, contact__notify=True, received_at__lte=instance.at)
               .order_by().values_list("pk", "contact__email", "contact__phone"))
    at = now()
    rows = []
    for pk, email, phone in reports:
        medium = medium_for(email, phone)
        if medium is not None:
            rows.append(Notification(report_id=pk, entry=instance, medium=medium, next_try_at=at, created_at=at))
    if rows:
        Notification.objects.bulk_create(rows, ignore_conflicts=True)
        from .tasks import schedule_notifications

        transaction.on_commit(schedule_notifications)


def following_cases(case_id: int) -> list[int]:
    """The case and the cases merged into it (two levels, as the tracking page
    follows them), each step through the ``merged_into`` index: an OR across
    the joins would make the database read every report instead."""
    ids, level = [case_id], [case_id]
    for _depth in range(2):
        level = list(Case.objects.filter(merged_into_id__in=level).values_list("pk", flat=True))
        if not level:
            break
        ids += level
    return ids


# --------------------------------------------------------------------------- sending them


def stop_token(report_id: int) -> str:
    return signing.dumps(report_id, salt=STOP_SALT, compress=True)


def report_of_stop_token(token: str) -> int | None:
    try:
        return int(signing.loads(token, salt=STOP_SALT))
    except (signing.BadSignature, TypeError, ValueError):
        return None


@dataclass
class Message:
    subject: str
    text: str


def sender_name(language: str) -> str:
    """Who messages in ``language`` come from: the city's ``SENDER_NAMES`` or the default."""
    with translation.override(language):
        return settings.SENDER_NAMES.get(translation.get_language()) or str(_("City operations centre (Chengyun)"))


def message(n: Notification) -> Message:
    """The message for ``n``, in the reporter's language."""
    report, status = n.report, n.entry.to_status
    language = report.contact.language or settings.LANGUAGE_CODE
    with translation.override(language):
        track = settings.PUBLIC_URL + reverse("portal:track_detail", args=[report.number])
        stop = settings.PUBLIC_URL + reverse("portal:stop_messages", args=[stop_token(report.pk)])
        label, words = str(STATUS_LABELS.get(status, status)), str(STATUS_WORDS.get(status, ""))
        subject = _("Your report %(number)s: %(status)s") % {"number": report.number, "status": label}
        if n.medium == Notification.Medium.SMS:
            signature = settings.SMS_SIGNATURE or _("Chengyun")
            return Message(subject, f"【{signature}】" + _("Report %(number)s: %(words)s Follow it: %(track)s "
                                                          "No more messages: %(stop)s") % {
                "number": report.number, "words": words, "track": track, "stop": stop})
        text = "\n\n".join([
            _("Your report %(number)s (“%(title)s”) has news:") % {"number": report.number, "title": report.title},
            words,
            _("Follow it here: %(url)s") % {"url": track},
            _("You get these messages because you asked for them when you reported. "
              "To stop them for this report: %(url)s") % {"url": stop},
            _("%(sender)s. This message was sent automatically; replies are not read.") % {
                "sender": sender_name(language)},
        ])
        return Message(subject, text)


def due(at=None, limit: int = BATCH) -> list[Notification]:
    at = at or now()
    return list(Notification.objects.filter(status=NotificationStatus.PENDING, next_try_at__lte=at)
                .select_related("report", "report__contact", "entry").order_by("next_try_at", "pk")[:limit])


def send_due(limit: int = BATCH) -> dict:
    """Send one batch of what is due; -> counts by outcome.

    Each message is claimed first (its next try moved :data:`LEASE` ahead, if
    no other worker moved it), so two workers never send one twice. When a
    medium fails as a whole (the mail server or the gateway is down: see
    :func:`medium_down`), the rest of the batch's messages of that medium are
    put back without an attempt counted, rather than each waiting for its own
    time-out; a failure of one message (a refused address) is that message's
    alone."""
    batch = due(limit=limit)
    counts = {"sent": 0, "retry": 0, "failed": 0, "stopped": 0, "deferred": 0}
    if not batch:
        return counts
    outcomes = []
    connection = None
    down: set[str] = set()
    try:
        for n in batch:
            at = now()
            if not Notification.objects.filter(pk=n.pk, status=NotificationStatus.PENDING, next_try_at=n.next_try_at) \
                    .update(next_try_at=at + LEASE):
                continue  # another worker has it
            contact = n.report.contact
            if n.medium in down:
                outcome, error = "deferred", ""
            elif contact is None or not contact.notify:
                outcome, error = "stopped", _("the reporter asked to stop")
            else:
                try:
                    if n.medium == Notification.Medium.EMAIL:
                        if connection is None:
                            connection = mail.get_connection()
                            connection.open()
                        _send_email(n, contact.email, connection)
                    else:
                        _send_sms(n, contact.phone)
                    outcome, error = "sent", ""
                except Exception as exc:  # noqa: BLE001 - any failure of the mail server or gateway is retried
                    outcome, error = "retry", error_text(exc)
                    if medium_down(exc):
                        down.add(n.medium)
            outcome = _store(n, outcome, error)
            counts[outcome] += 1
            outcomes.append([n.pk, outcome])
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()
    if outcomes:
        with transaction.atomic():
            record("notification.send", actor="worker", data={**counts, "notifications": outcomes})
    return counts


class GatewayNotSet(RuntimeError):
    """An SMS is due and no gateway is set (it was unset after the message was written)."""


# Gateway answers that concern every message: not allowed (token), not there, too many, timed out.
GATEWAY_WIDE = frozenset({401, 403, 404, 405, 408, 429})


def medium_down(exc: Exception) -> bool:
    """Whether the failure concerns every message of the medium (cannot
    connect, disconnected, timed out, the sender refused, the server closing
    with 421, the gateway refusing the token or answering 5xx, no gateway
    set), not only this one (a refused recipient, a 4xx for one number)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in GATEWAY_WIDE
    if isinstance(exc, (GatewayNotSet, smtplib.SMTPSenderRefused)):
        return True
    codes = {getattr(exc, "smtp_code", None)}
    recipients = getattr(exc, "recipients", None)
    if isinstance(recipients, dict):
        codes |= {code for code, _text in recipients.values()}
    if 421 in codes:  # the server is closing the connection: every message after this one fails too
        return True
    if isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)):
        return False
    return isinstance(exc, (smtplib.SMTPException, OSError, urllib.error.URLError))


def error_text(exc: Exception) -> str:
    """What went wrong, for the admin and the log, without the address: the
    exception's kind and code, and its text with numbers and emails masked
    (a refused recipient is named in the mail server's answer)."""
    code = getattr(exc, "smtp_code", None) or getattr(exc, "code", None)
    recipients = getattr(exc, "recipients", None)
    if isinstance(recipients, dict):  # SMTPRecipientsRefused: {address: (code, text)}
        code = ",".join(sorted({str(c) for c, _text in recipients.values()}))
        return f"{type(exc).__name__} {code}"[:300]
    text = redact_text(str(exc))
    return (f"{type(exc).__name__}" + (f" {code}" if code else "") + (f": {text}" if text else ""))[:300]


def _store(n: Notification, outcome: str, error: str) -> str:
    at = now()
    if outcome == "deferred":  # its medium failed on another message just now: not this one's attempt
        n.next_try_at = at + timedelta(minutes=2)
        n.save(update_fields=["next_try_at"])
        return outcome
    n.attempts += 1
    n.last_error = error
    if outcome == "sent":
        n.status, n.sent_at = NotificationStatus.SENT, at
    elif outcome == "stopped":
        n.status = NotificationStatus.STOPPED
    elif n.attempts >= MAX_ATTEMPTS:
        n.status, outcome = NotificationStatus.FAILED, "failed"
        log.warning("notification %s given up after %s attempts: %s", n.pk, n.attempts, error)
    else:
        n.next_try_at = at + timedelta(minutes=2 ** n.attempts)
    n.save(update_fields=["attempts", "last_error", "status", "sent_at", "next_try_at"])
    return outcome


def _send_email(n: Notification, address: str, connection) -> None:
    m = message(n)
    mail.EmailMessage(m.subject, m.text, settings.DEFAULT_FROM_EMAIL, [address], connection=connection).send()


def _send_sms(n: Notification, phone: str) -> None:
    if not settings.SMS_WEBHOOK_URL:
        raise GatewayNotSet("no SMS gateway is set (CHENGYUN_SMS_WEBHOOK_URL)")
    body = json.dumps({"id": f"chengyun-notification-{n.pk}", "to": phone, "text": message(n).text},
                      ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if settings.SMS_WEBHOOK_TOKEN:
        headers["Authorization"] = f"Bearer {settings.SMS_WEBHOOK_TOKEN}"
    request = urllib.request.Request(settings.SMS_WEBHOOK_URL, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the configured gateway
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(settings.SMS_WEBHOOK_URL, response.status, "gateway refused", None, None)


def next_due():
    """When the next waiting message is due, or None."""
    return (Notification.objects.filter(status=NotificationStatus.PENDING).order_by("next_try_at")
            .values_list("next_try_at", flat=True).first())


def stop(report_id: int) -> Report | None:
    """The reporter of this report wants no more messages (about any report of
    theirs that shares the contact: one contact per report)."""
    report = Report.objects.select_related("contact").filter(pk=report_id).first()
    if report is None or report.contact is None:
        return report
    with transaction.atomic():
        type(report.contact).objects.filter(pk=report.contact_id).update(notify=False)
        stopped = (Notification.objects.filter(report=report, status=NotificationStatus.PENDING)
                   .update(status=NotificationStatus.STOPPED, last_error=_("the reporter asked to stop")))
        record("notification.stop", actor="reporter", obj=report, data={"report": report.number, "pending": stopped})
    return report
