"""Messages to reporters who asked for them: written with the status change,
sent by the worker by email or through the SMS gateway, retried, stopped by
the link in every message; nothing for those who did not ask."""

from __future__ import annotations

import json
import re
import smtplib
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases import services as case_services
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.clock import now
from chengyun.intake import notify
from chengyun.intake.models import Notification, NotificationStatus, Report
from chengyun.intake.services import ReportInput, submit
from chengyun.intake.tasks import schedule_notifications, send_notifications_task

from .. import factories as f

pytestmark = pytest.mark.django_db
LEAK = "水管爆裂 路面冒水"


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_URL = "https://city.example.org"
    settings.SMS_WEBHOOK_URL = ""


def _report(*, email="li@example.org", notify_me=True, language="en", street="100101001", **extra) -> Report:
    lon, lat = f.centre(street)
    contact = {"email": email, "notify": notify_me, "language": language}
    return submit(ReportInput(channel="web", description=LEAK, lon=lon, lat=lat, contact=contact, **extra)).report


def _fix(case: Case, by) -> Case:
    """The department starts and finishes; the check on site passes."""
    case = case_services.start_case(Case.objects.get(pk=case.pk), by=by)
    case = case_services.report_done(Case.objects.get(pk=case.pk), by=by)
    return case_services.verify_case(Case.objects.get(pk=case.pk), by=by, ok=True)


def test_the_reporter_who_asked_is_told_when_work_starts_and_when_it_is_fixed(staff):
    report = _report()
    assert report.case.status == CaseStatus.DISPATCHED
    assert not Notification.objects.exists(), "dispatched while being taken in: the reporter saw that already"
    _fix(report.case, staff["root"])
    waiting = Notification.objects.filter(report=report).order_by("pk")
    assert [n.entry.to_status for n in waiting] == [CaseStatus.IN_PROGRESS, CaseStatus.CLOSED]
    assert all(n.medium == "email" and n.status == NotificationStatus.PENDING for n in waiting)

    assert notify.send_due() == {"sent": 2, "retry": 0, "failed": 0, "stopped": 0, "deferred": 0}
    assert [m.to for m in mail.outbox] == [["li@example.org"]] * 2
    started, fixed = mail.outbox
    assert started.subject == f"Your report {report.number}: Being fixed"
    assert fixed.subject == f"Your report {report.number}: Fixed"
    assert "Fixed and closed." in fixed.body
    assert f"https://city.example.org/track/{report.number}/" in fixed.body
    assert re.search(r"https://city\.example\.org/messages/stop/[^/\s]+/", fixed.body)
    assert all(n.status == NotificationStatus.SENT and n.sent_at for n in waiting.all())
    sent = AuditRecord.objects.get(action="notification.send")
    assert sent.data["sent"] == 2 and "li@example.org" not in json.dumps(sent.data), "ids, not addresses"
    assert notify.send_due()["sent"] == 0, "each message once"
    assert list(verify_chain()) == []


def test_in_the_reporters_language(staff):
    report = _report(language="zh-hans")
    case_services.start_case(report.case, by=staff["root"])
    notify.send_due()
    (message,) = mail.outbox
    assert message.subject.startswith(f"您的诉求 {report.number}")
    assert "查看进度" in message.body


def test_messages_are_signed_with_the_citys_own_name(staff, settings):
    settings.SENDER_NAMES = {"zh-hans": "杭州市城市运行管理中心", "en": ""}
    zh, en = _report(language="zh-hans"), _report(language="en", email="wang@example.org", street="100102001")
    for report in (zh, en):
        case_services.start_case(report.case, by=staff["root"])
    notify.send_due()
    bodies = {m.to[0]: m.body for m in mail.outbox}
    assert "杭州市城市运行管理中心。本消息由系统自动发送" in bodies["li@example.org"]
    assert "City operations centre (Chengyun). This message was sent automatically" in bodies["wang@example.org"], \
        "a language the city named no sender for keeps the default"


def test_a_text_message_starts_with_the_signature_the_gateway_has_registered(staff, gateway, settings):
    def texted(street: str) -> tuple[Report, str]:
        report = submit(ReportInput(channel="hotline", description=LEAK, address=f"区1 街道{street[-4:]} 和平路12号",
                                    contact={"phone": "13812345678", "notify": True, "language": "zh-hans"})).report
        case_services.start_case(report.case, by=staff["root"])
        notify.send_due()
        return report, gateway.received[-1][1]["text"]

    report, text = texted("100101001")
    assert text.startswith(f"【城运】诉求 {report.number}："), "the default signature"
    settings.SMS_SIGNATURE = "杭州12345"
    report, text = texted("100102001")
    assert text.startswith(f"【杭州12345】诉求 {report.number}：")


def test_nobody_who_did_not_ask_gets_a_message(staff):
    report = _report(notify_me=False)
    _fix(report.case, staff["root"])
    assert not Notification.objects.exists()


def test_attached_and_merged_reporters_follow_the_case_that_handles_their_report(staff):
    first = _report(email="first@example.org")
    attached = _report(email="attached@example.org")  # the same problem at the same place
    assert attached.case_id == first.case_id
    # Elsewhere, with a category the classifier disputes: it waits for a dispatcher, who merges it.
    elsewhere = _report(email="merged@example.org", street="100102001", category="0102")
    assert elsewhere.case_id != first.case_id and elsewhere.case.status == CaseStatus.NEW
    case_services.merge_case(Case.objects.get(pk=elsewhere.case_id), into=Case.objects.get(pk=first.case_id),
                             by=staff["root"])
    _fix(first.case, staff["root"])
    notify.send_due()
    told = {}
    for m in mail.outbox:
        told.setdefault(m.to[0], []).append(m.subject.rsplit(": ", 1)[1])
    assert told == {
        "first@example.org": ["Being fixed", "Fixed"],
        "attached@example.org": ["Being fixed", "Fixed"],
        "merged@example.org": ["Merged", "Being fixed", "Fixed"],
    }


def test_the_stop_link_asks_then_stops(client, staff):
    report = _report()
    case_services.start_case(report.case, by=staff["root"])
    notify.send_due()
    link = re.search(r"https://city\.example\.org(/messages/stop/[^/\s]+/)", mail.outbox[0].body).group(1)
    page = client.get(link, HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200 and "Stop the messages" in page.content.decode()
    assert Report.objects.get(pk=report.pk).contact.notify, "a GET (a mail scanner) stops nothing"
    case_services.report_done(Case.objects.get(pk=report.case_id), by=staff["root"])
    case_services.verify_case(Case.objects.get(pk=report.case_id), by=staff["root"], ok=True)
    done = client.post(link, HTTP_ACCEPT_LANGUAGE="en")
    assert done.status_code == 200 and f"no more messages about report {report.number}" in done.content.decode()
    assert not Report.objects.get(pk=report.pk).contact.notify
    assert Notification.objects.get(entry__to_status=CaseStatus.CLOSED).status == NotificationStatus.STOPPED
    assert notify.send_due()["sent"] == 0 and len(mail.outbox) == 1
    again = client.get(link, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "no more messages about report" in again and "Stop the messages" not in again, "opened again: already"
    assert client.get("/messages/stop/not-a-token/").status_code == 404


def test_asking_for_messages_without_an_address_names_the_email_field(client, staff):
    client.force_login(staff["operator"])
    lon, lat = f.centre("100101001")
    response = client.post("/api/v1/reports/", {"channel": "hotline", "description": LEAK, "lon": lon, "lat": lat,
                                                "contact": {"phone": "13812345678", "notify": True}},
                           content_type="application/json")
    assert response.status_code == 400 and response.json()["field"] == "email"
    assert not Report.objects.exists()


def test_the_portal_form_asks_for_messages_only_with_an_email(client, intake_world, staff):
    from ..portal.pages import EN, report_form

    lon, lat = f.centre("100101001")
    refused = client.post("/report/", report_form(client, description=LEAK, lon=str(lon), lat=str(lat), notify="on"),
                          **EN)
    assert refused.status_code == 200 and "Give an email address to get messages" in refused.content.decode()
    form = report_form(client)
    assert 'aria-describedby="notify-hint"' in client.get("/report/", **EN).content.decode()
    sent = client.post("/report/", {**form, "description": LEAK, "lon": str(lon), "lat": str(lat), "notify": "on",
                                    "email": "li@example.org"}, **EN)
    assert sent.status_code == 302
    confirmation = client.get(sent["Location"], **EN).content.decode()
    assert "We will email you when the status of your report changes" in confirmation
    assert "example.org" not in confirmation, "no address on a page anyone with the number may open"
    contact = Report.objects.get().contact
    assert contact.notify and contact.language == "en"


class RefusingBackend:
    """A mail server that refuses the recipients in ``refuse``, naming them in its answer."""

    refuse: set = set()

    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        return True

    def close(self):
        pass

    def send_messages(self, messages):
        to = messages[0].to[0]
        if to in self.refuse:
            raise smtplib.SMTPRecipientsRefused({to: (550, f"mailbox {to} unavailable".encode())})
        mail.outbox.append(messages[0])
        return 1


class DownBackend(RefusingBackend):
    """A mail server nobody answers at."""

    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")


class _Gateway(BaseHTTPRequestHandler):
    answer = 200
    received: list = []

    def do_POST(self):  # noqa: N802 - the http.server name
        length = int(self.headers["Content-Length"])
        type(self).received.append((self.headers.get("Authorization"), json.loads(self.rfile.read(length))))
        self.send_response(type(self).answer)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def gateway(settings):
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    _Gateway.received, _Gateway.answer = [], 200
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.SMS_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/sms"
    settings.SMS_WEBHOOK_TOKEN = "gw-secret"
    yield _Gateway
    server.shutdown()
    server.server_close()


def test_a_caller_who_wants_sms_gets_them_through_the_gateway_with_retries(client, staff, gateway):
    client.force_login(staff["operator"])
    page = client.get("/console/hotline/").content.decode()
    assert 'name="notify"' in page, "offered only where the city has an SMS gateway"
    assert client.post("/console/hotline/", {
        "token": "call-1", "phone": "13812345678", "name": "王小明", "description": LEAK,
        "address": "区1 街道1001 和平路12号", "category": "0101", "priority": "", "notify": "1",
    }).status_code == 302
    report = Report.objects.get()
    assert report.contact.notify and report.case.status == CaseStatus.DISPATCHED
    gateway.answer = 503
    case_services.start_case(report.case, by=staff["root"])
    assert notify.send_due() == {"sent": 0, "retry": 1, "failed": 0, "stopped": 0, "deferred": 0}
    n = Notification.objects.get()
    assert n.medium == "sms" and n.attempts == 1 and n.status == NotificationStatus.PENDING
    assert n.next_try_at > now() and "503" in n.last_error
    assert notify.send_due()["retry"] == 0, "not due again yet"

    gateway.answer = 200
    Notification.objects.update(next_try_at=now() - timedelta(seconds=1))
    assert notify.send_due()["sent"] == 1
    auth, body = gateway.received[-1]
    assert auth == "Bearer gw-secret"
    assert body["to"] == "13812345678" and report.number in body["text"] and body["id"].endswith(str(n.pk))
    assert re.search(r"/messages/stop/[^/\s]+/", body["text"]), "an SMS, too, says how to stop them"


def test_a_message_that_keeps_failing_is_given_up(staff, gateway):
    gateway.answer = 500
    report = submit(ReportInput(channel="hotline", description=LEAK, address="区1 街道1001 和平路12号",
                                category="0101", contact={"phone": "13812345678", "notify": True})).report
    case_services.start_case(report.case, by=staff["root"])
    for _attempt in range(notify.MAX_ATTEMPTS):
        Notification.objects.update(next_try_at=now() - timedelta(seconds=1))
        notify.send_due()
    n = Notification.objects.get()
    assert n.status == NotificationStatus.FAILED and n.attempts == notify.MAX_ATTEMPTS


def test_the_worker_task_sends_and_queues_itself_once(staff):
    from django_tasks_db.models import DBTaskResult

    report = _report()
    case_services.start_case(report.case, by=staff["root"])
    assert schedule_notifications() is True
    assert schedule_notifications() is False, "one run waiting is enough"
    assert DBTaskResult.objects.filter(task_path=send_notifications_task.module_path, status="READY").count() == 1
    assert send_notifications_task.call()["sent"] == 1
    assert len(mail.outbox) == 1


def _three_waiting(staff) -> list[Report]:
    reports = [_report(email=f"r{i}@example.org", street=street)
               for i, street in enumerate(("100101001", "100102001", "100103001"))]
    for r in reports:
        case_services.start_case(r.case, by=staff["root"])
    return reports


def test_a_refused_address_is_that_messages_failure_alone_and_is_not_written_down(staff, settings, monkeypatch):
    _three_waiting(staff)
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    monkeypatch.setattr(RefusingBackend, "refuse", {"r0@example.org"})
    assert notify.send_due() == {"sent": 2, "retry": 1, "failed": 0, "stopped": 0, "deferred": 0}
    tried = Notification.objects.get(status="pending")
    assert tried.attempts == 1 and tried.last_error == "SMTPRecipientsRefused 550" and "@" not in tried.last_error


def test_when_the_mail_server_is_down_the_rest_of_the_batch_waits_without_a_try_counted(staff, settings):
    _three_waiting(staff)
    settings.EMAIL_BACKEND = f"{__name__}.DownBackend"
    assert notify.send_due() == {"sent": 0, "retry": 1, "failed": 0, "stopped": 0, "deferred": 2}
    assert Notification.objects.get(attempts=1).last_error.startswith("ConnectionRefusedError")
    assert Notification.objects.filter(attempts=0, status="pending", next_try_at__gt=now()).count() == 2


def test_a_message_another_worker_has_claimed_is_not_sent_twice(staff, monkeypatch):
    report = _report()
    case_services.start_case(report.case, by=staff["root"])
    batch = notify.due()
    Notification.objects.update(next_try_at=now() + notify.LEASE)  # the other worker's claim
    monkeypatch.setattr(notify, "due", lambda **_kw: batch)  # this worker read the batch before the claim
    assert notify.send_due()["sent"] == 0
    assert not mail.outbox


@pytest.mark.parametrize(("given", "stored"), [("en-GB", "en"), ("zh-CN", "zh-hans"), ("zh_Hans", "zh-hans"),
                                               ("klingon", ""), ("", "")])
def test_the_language_kept_is_one_the_site_speaks(staff, given, stored):
    assert _report(language=given).contact.language == stored


def test_staff_see_on_the_case_page_what_the_reporter_was_told(client, staff):
    report = _report()
    case_services.start_case(report.case, by=staff["root"])
    notify.send_due()
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{report.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Messages to the reporter" in page
    assert re.search(r"In progress · email · Sent \d\d-\d\d \d\d:\d\d", page)
    assert "li@example.org" not in page, "the address stays masked"


@pytest.mark.parametrize(("failure", "wide"), [
    (smtplib.SMTPSenderRefused(550, b"sender refused", "noreply@localhost"), True),
    (smtplib.SMTPRecipientsRefused({"a@example.org": (421, b"closing")}), True),
    (smtplib.SMTPRecipientsRefused({"a@example.org": (550, b"no such mailbox")}), False),
    (smtplib.SMTPServerDisconnected("gone"), True),
    (ConnectionRefusedError(111, "refused"), True),
    (notify.GatewayNotSet("none"), True),
])
def test_which_failures_concern_every_message(failure, wide):
    assert notify.medium_down(failure) is wide


@pytest.mark.parametrize(("code", "wide"), [(400, False), (422, False), (401, True), (429, True), (503, True)])
def test_which_gateway_answers_concern_every_message(code, wide):
    import urllib.error

    assert notify.medium_down(urllib.error.HTTPError("http://gw", code, "x", None, None)) is wide


def test_the_confirmation_page_says_a_text_message_will_come(client, staff, settings):
    settings.SMS_WEBHOOK_URL = "http://127.0.0.1:9/sms"
    report = submit(ReportInput(channel="hotline", description=LEAK, address="区1 街道1001 和平路12号", category="0101",
                                contact={"phone": "13812345678", "notify": True})).report
    page = client.get(f"/report/received/{report.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "We will send you a text message when the status of your report changes" in page
    assert "13812345678" not in page and "5678" not in page
