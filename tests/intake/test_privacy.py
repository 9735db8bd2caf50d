"""Reporters' contact details: masked wherever a report is shown, revealed
in full only to the people who call back, and every reveal audited."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chengyun.audit.models import AuditRecord
from chengyun.intake.models import Report
from chengyun.intake.privacy import mask_phone, redact_text

from .. import factories as f
from .reports_api import REPORTS, post, post_report, report_url

PHONE = "13812341234"
CONTACT = {"name": "王小明", "phone": PHONE, "email": "wxm@example.com", "device_id": "meter-0042"}


def reported(client, sensor) -> dict:
    lon, lat = f.centre("100101001")
    return post_report(client, sensor, channel="hotline", description="水管爆裂，路面一直冒水", lon=lon, lat=lat,
                       contact=CONTACT)


def test_contact_is_masked_in_every_answer(client, staff, sensor):
    sent = reported(client, sensor)
    assert sent["contact"] == {"name": "王**", "phone": "138****1234", "email": "w***@example.com",
                               "device_id": "me***", "account_id": "", "masked": True}
    for user in (staff["operator"], staff["leader"], staff["water"], sensor):
        client.force_login(user)
        for url in (report_url(sent["number"]), REPORTS):
            response = client.get(url)
            assert response.status_code == 200
            text = response.content.decode()
            assert PHONE not in text and "王小明" not in text and "wxm@" not in text
            assert "138****1234" in text


def test_operator_reveals_with_a_reason_and_it_is_audited(client, staff, sensor):
    sent = reported(client, sensor)
    url = report_url(sent["number"], "contact")
    before = AuditRecord.objects.filter(action="contact.view").count()

    assert post(client, staff["operator"], url, expect=400)["field"] == "reason"
    assert AuditRecord.objects.filter(action="contact.view").count() == before

    full = post(client, staff["operator"], url, reason="call back about the repair")
    assert full == {**CONTACT, "account_id": "", "masked": False}
    audit = AuditRecord.objects.filter(action="contact.view").get()
    assert audit.actor == "operator"
    assert audit.object_type == "intake.report" and audit.object_id == str(Report.objects.get().pk)
    assert audit.data["report"] == sent["number"] and audit.data["reason"] == "call back about the repair"
    assert PHONE not in str(audit.data), "the audit log says who looked, not what they saw"


def test_the_handling_department_may_reveal(client, staff, sensor):
    sent = reported(client, sensor)
    full = post(client, staff["water"], report_url(sent["number"], "contact"), reason="need to ask the exact spot")
    assert full["phone"] == PHONE
    assert AuditRecord.objects.filter(action="contact.view", actor="water").count() == 1



def test_a_department_that_returned_the_case_may_no_longer_reveal(client, staff, sensor):
    from chengyun.cases.models import Case
    from chengyun.cases.services import return_case

    sent = reported(client, sensor)
    return_case(Case.objects.get(number=sent["case"]), by=staff["water"], reason="not ours")
    answer = post(client, staff["water"], report_url(sent["number"], "contact"), expect=403, reason="call back")
    assert PHONE not in str(answer)
    assert not AuditRecord.objects.filter(action="contact.view").exists()


def test_leader_and_sender_are_refused(client, staff, sensor):
    sent = reported(client, sensor)
    url = report_url(sent["number"], "contact")
    for user in (staff["leader"], sensor):
        answer = post(client, user, url, expect=403, reason="curious")
        assert answer["code"] == "forbidden" and PHONE not in str(answer)
    assert not AuditRecord.objects.filter(action="contact.view").exists()


def test_admin_shows_the_contact_masked(client, staff, sensor):
    sent = reported(client, sensor)
    client.force_login(staff["root"])
    report = Report.objects.get(number=sent["number"])
    for url in ("/admin/intake/report/", f"/admin/intake/report/{report.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.content.decode()
        assert "138****1234" in text and PHONE not in text and "王小明" not in text, url


# --------------------------------------------------------------------------- masking, as a property

phones = st.one_of(
    st.text(alphabet="0123456789", max_size=24),
    st.from_regex(r"\A(\+86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}\Z"),
    st.from_regex(r"\A\(?0\d{2,3}\)?[ -]?\d{7,8}(-\d{1,4})?\Z"),
    st.text(alphabet="0123456789 +-()", max_size=24),
)


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def revealable(stripped: str) -> set[str]:
    """Every digit string made of some of the first three characters' digits
    followed by some of the last four characters' digits."""
    head, tail = digits(stripped[:3]), digits(stripped[-4:])
    return {head[:i] + tail[len(tail) - j:] for i in range(len(head) + 1) for j in range(len(tail) + 1)}


@given(phones)
def test_mask_phone_never_shows_more_than_the_first_3_and_last_4(phone):
    shown = mask_phone(phone)
    stripped = phone.strip()
    assert digits(shown) in revealable(stripped)
    # A number longer than seven characters always loses its middle.
    if len(stripped) > 7:
        assert len(digits(shown)) < len(digits(stripped))
        assert "****" in shown
    # Shorter numbers (landlines, extensions) keep at most a third of their characters.
    if len(stripped) < 11:
        assert len(shown.replace("*", "")) <= len(stripped) // 3


def test_mask_phone_examples():
    assert mask_phone(PHONE) == "138****1234"
    assert mask_phone(" +86 138 1234 1234 ") == "+86****1234"
    assert mask_phone("") == ""
    assert mask_phone("62345678") == "******78"
    assert mask_phone("0216234567") == "0*******67"
    assert mask_phone("12345") == "*****"


@pytest.mark.parametrize(("text", "shown"), [
    ("电话13812345678请回电", "电话138****5678请回电"),
    ("手机 138 1234 5678", "手机 138****5678"),
    ("座机021-62345678", "座机021****5678"),
    ("身份证110101199003071234", "身份证110101********1234"),
    ("mail me: wang.fang@example.com", "mail me: w***@example.com"),
    # numbers that are not personal stay as written
    ("报告R202405010001234号", "报告R202405010001234号"),
    ("2024年5月1日 幸福路1234号 301室", "2024年5月1日 幸福路1234号 301室"),
    ("订单1381234567890", "订单1381234567890"),
    ("电话１３８１２３４５６７８", "电话138****5678"),  # full-width digits, as Chinese input methods type them
    ("138.1234.5678 或 (010) 12345678", "138****5678 或 010****5678"),
    ("坐标120.0123456789", "坐标120.0123456789"),
    ("邮箱是abc@example.com", "邮箱是a***@example.com"),
    ("电话13812345678.", "电话138****5678."),
])
def test_redact_text_masks_numbers_and_emails_written_into_text(text, shown):
    assert redact_text(text) == shown


@given(st.text(alphabet="0123456789 -年号路", max_size=20), st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
       st.text(alphabet="年号路", max_size=5))
def test_no_mobile_number_survives_redaction(before, mobile, after):
    assert mobile not in redact_text(before + "电话" + mobile + after)


def test_long_runs_of_letters_and_digits_come_back_as_they_were():
    for text in ("x" * 4000, "邮" * 4000, "1" * 4000, "a." * 2000):
        assert redact_text(text) == text
