"""POST requests: form and JSON bodies, attributes, contact kept apart,
idempotency, and every kind of bad input (nothing stored)."""

from __future__ import annotations

import io
import json
import urllib.parse

import pytest

from chengyun.audit.services import verify_chain
from chengyun.cases.models import Channel
from chengyun.intake.models import Report

from .. import factories as f
from .conftest import BASE, body, counts, leak_form


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_a_request(client, api_key, fmt, encoding):
    form = leak_form(api_key, **{
        "attribute[affected][]": ["road", "homes"], "attribute[depth_cm]": "12.5",
        "attribute[since]": "2024-05-01T08:00:00+08:00", "attribute[landmark]": "北门", "attribute[details]": "第一行\n第二行",
        "attribute[note]": "ignored: asks nothing", "attribute[unknown]": "ignored too",
        "email": "li@example.org", "phone": "13812345678", "first_name": "四", "last_name": "李",
        "device_id": "dev-1", "account_id": "acc-9", "media_url": "https://img.example.org/1.jpg",
    })
    if encoding == "urlencoded":  # what partner apps send
        r = client.post(BASE + f"requests.{fmt}", urllib.parse.urlencode(form, doseq=True),
                        content_type="application/x-www-form-urlencoded")
    else:
        r = client.post(BASE + f"requests.{fmt}", form)
    assert r.status_code == 200, r.content
    report = Report.objects.get()
    if fmt == "json":
        assert r["Content-Type"] == "application/json; charset=utf-8"
        (row,) = body(r)
        assert row["service_request_id"] == report.number
        assert row["account_id"] is None
        assert "service_notice" in row
    else:
        root = body(r)
        assert root.tag == "service_requests"
        assert root.findtext("request/service_request_id") == report.number
        assert root.find("request/service_notice") is not None
        assert root.find("request/account_id") is not None
    assert report.channel == Channel.OPEN311
    assert report.source == api_key.source
    assert report.category.code == "0101" and report.category_given
    assert report.attributes == {
        "severity": "flood", "affected": ["road", "homes"], "depth_cm": 12.5,
        "since": "2024-05-01T08:00:00+08:00", "landmark": "北门", "details": "第一行\n第二行",
    }
    assert report.media_url == "https://img.example.org/1.jpg"
    contact = report.contact
    assert (contact.name, contact.email, contact.phone, contact.device_id, contact.account_id) == (
        "李四", "li@example.org", "13812345678", "dev-1", "acc-9")
    assert report.area.code == "100101001"
    assert report.case.timeline.first().actor_name == "open311:Civic App"
    assert list(verify_chain()) == []


def test_post_json_body(client, api_key):
    lon, lat = f.centre("100102001")
    payload = {"api_key": api_key.raw, "service_code": "0101", "lat": lat, "long": lon,
               "description": "water main burst", "attribute": {"severity": "drip", "affected": ["road"], "depth_cm": 3},
               "first_name": "Ann", "last_name": "Lee"}
    r = client.post(BASE + "requests.json", json.dumps(payload), content_type="application/json")
    assert r.status_code == 200, r.content
    report = Report.objects.get(number=body(r)[0]["service_request_id"])
    assert report.attributes == {"severity": "drip", "affected": ["road"], "depth_cm": 3}
    assert report.contact.name == "Ann Lee"


def test_post_json_body_with_form_style_keys(client, api_key):
    lon, lat = f.centre("100103001")
    payload = {"api_key": api_key.raw, "service_code": "0101", "lat": lat, "long": lon, "description": "leak",
               "attribute[severity]": "drip", "attribute[affected][]": ["homes"]}
    r = client.post(BASE + "requests.json", json.dumps(payload), content_type="application/json")
    assert r.status_code == 200, r.content
    assert Report.objects.get().attributes == {"severity": "drip", "affected": ["homes"]}


def test_a_service_without_questions_needs_no_attributes(client, api_key):
    lon, lat = f.centre("100104002")
    r = client.post(BASE + "requests.json", {"api_key": api_key.raw, "service_code": "0102", "lat": lat, "long": lon})
    assert r.status_code == 200, r.content
    report = Report.objects.get()
    assert report.title == "路灯", "without a description the service name is the title"
    assert report.contact is None


def test_address_string_or_address_id_locate_the_request(client, api_key):
    r = client.post(BASE + "requests.json", {"api_key": api_key.raw, "service_code": "0102",
                                             "address_id": "100102002", "description": "路灯不亮"})
    assert r.status_code == 200, r.content
    report = Report.objects.get(number=body(r)[0]["service_request_id"])
    assert report.area.code == "100102002" and report.lat is None

    r = client.post(BASE + "requests.json", {"api_key": api_key.raw, "service_code": "0102",
                                             "address_string": "区3 人民路 12号", "description": "整条路的路灯都灭了"})
    assert r.status_code == 200, r.content
    report = Report.objects.get(number=body(r)[0]["service_request_id"])
    assert report.address == "区3 人民路 12号"
    assert report.area.code == "100103"


def test_idempotency_key_returns_the_first_request(client, api_key):
    form = leak_form(api_key)
    first = client.post(BASE + "requests.json", form, HTTP_IDEMPOTENCY_KEY="abc-1")
    again = client.post(BASE + "requests.json", form, HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 200
    assert body(first)[0]["service_request_id"] == body(again)[0]["service_request_id"]
    assert Report.objects.count() == 1
    other = client.post(BASE + "requests.json", {**form, "description": "另一个问题：路灯不亮"},
                        HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 400
    (error,) = body(other)
    assert error["description"].startswith("Idempotency-Key")
    assert body(first)[0]["service_request_id"] in error["description"]
    assert Report.objects.count() == 1


# --------------------------------------------------------------------------- bad input: nothing is stored


def _error(response, fmt="json"):
    if fmt == "json":
        (error,) = body(response)
        return error["code"], error["description"]
    root = body(response)
    assert root.tag == "errors"
    (error,) = root.findall("error")
    return int(error.findtext("code")), error.findtext("description")


BAD = [
    ("missing service_code", {"service_code": None}, 400, "service_code"),
    ("unknown service_code", {"service_code": "9999"}, 404, "service_code"),
    ("group as service_code", {"service_code": "01"}, 404, "service_code"),
    ("lat not a number", {"lat": "north"}, 400, "lat"),
    ("lat out of range", {"lat": "91"}, 400, "lat"),
    ("long out of range", {"long": "-181"}, 400, "long"),
    ("long missing", {"long": None}, 400, "long"),
    ("lat is NaN", {"lat": "nan"}, 400, "lat"),
    ("no location", {"lat": None, "long": None}, 400, "lat"),
    ("point outside the city", {"long": str(f.OUTSIDE[0]), "lat": str(f.OUTSIDE[1])}, 400, "lat"),
    ("unknown address_id", {"lat": None, "long": None, "address_id": "999"}, 400, "address_id"),
    ("required attribute missing", {"attribute[severity]": None}, 400, "attribute[severity]"),
    ("singlevaluelist not a key", {"attribute[severity]": "huge"}, 400, "attribute[severity]"),
    ("singlevaluelist two values", {"attribute[severity][]": ["drip", "flood"], "attribute[severity]": None}, 400,
     "attribute[severity]"),
    ("multivaluelist not a key", {"attribute[affected][]": ["road", "cars"]}, 400, "attribute[affected]"),
    ("number not a number", {"attribute[depth_cm]": "deep"}, 400, "attribute[depth_cm]"),
    ("number infinite", {"attribute[depth_cm]": "Infinity"}, 400, "attribute[depth_cm]"),
    ("datetime not a datetime", {"attribute[since]": "yesterday"}, 400, "attribute[since]"),
    ("datetime impossible", {"attribute[since]": "2024-02-30T10:00:00Z"}, 400, "attribute[since]"),
    ("string with a line break", {"attribute[landmark]": "a\nb"}, 400, "attribute[landmark]"),
    ("description too long", {"description": "漏" * 4001}, 400, "description"),
    ("bad media_url", {"media_url": "javascript:alert(1)"}, 400, "media_url"),
    # A phone or email that does not look like one is kept as sent (the test below); one too long to store is refused.
    ("email too long", {"email": "li" * 130 + "@example.org"}, 400, "email"),
    ("other jurisdiction", {"jurisdiction_id": "elsewhere.gov"}, 404, "jurisdiction_id"),
]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize(("why", "change", "status", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_nothing_is_stored(client, api_key, fmt, why, change, status, field, settings):
    settings.OPEN311_JURISDICTION = "testcity.gov.cn"  # a city that names its jurisdiction refuses others
    before = counts()
    r = client.post(BASE + f"requests.{fmt}", leak_form(api_key, **change))
    assert r.status_code == status, r.content
    code, description = _error(r, fmt)
    assert code == status
    assert field in description, description
    assert counts() == before


def test_description_of_exactly_4000_characters_is_fine(client, api_key):
    r = client.post(BASE + "requests.json", leak_form(api_key, description="漏" * 4000))
    assert r.status_code == 200, r.content


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_api_key_missing_wrong_or_revoked_is_403(client, api_key, fmt):
    from chengyun.open311.services import revoke_api_key

    before = counts()
    for key in (None, "", "nope", api_key.raw + "x"):
        r = client.post(BASE + f"requests.{fmt}", leak_form(api_key, api_key=key))
        assert r.status_code == 403
        code, description = _error(r, fmt)
        assert code == 403 and "api_key" in description
    revoke_api_key(api_key, by="test")
    r = client.post(BASE + f"requests.{fmt}", leak_form(api_key))
    assert r.status_code == 403
    assert "api_key" in _error(r, fmt)[1]
    assert counts() == before


def test_bad_json_body(client, api_key):
    before = counts()
    r = client.post(BASE + "requests.json", "{not json", content_type="application/json")
    assert r.status_code == 400
    assert body(r)[0]["code"] == 400
    r = client.post(BASE + "requests.json", "[1, 2]", content_type="application/json")
    assert r.status_code == 400
    assert counts() == before


@pytest.mark.parametrize(("field", "value", "words"), [
    ("description", {"a": 1}, "description must be a text or a number, not a JSON object or list."),
    ("description", ["a", "b"], "description takes one value, not a list."),
    ("lat", [[31.2]], "lat must be a text or a number"),
    ("service_code", {"code": "0101"}, "service_code must be a text or a number"),
])
def test_a_json_body_field_of_the_wrong_shape_is_refused_naming_it(client, api_key, field, value, words):
    before = counts()
    lon, lat = f.centre("100102001")
    payload = {"api_key": api_key.raw, "service_code": "0101", "lat": lat, "long": lon, "description": "leak",
               "attribute": {"severity": "drip"}, field: value}
    r = client.post(BASE + "requests.json", json.dumps(payload), content_type="application/json",
                    HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400, r.content
    assert body(r)[0]["code"] == 400 and words in body(r)[0]["description"]
    assert counts() == before


def test_a_form_body_with_too_many_fields_is_refused_in_open311s_format(client, api_key, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 20
    form = {**leak_form(api_key), **{f"attribute[x{i}]": "1" for i in range(30)}}
    before = counts()
    r = client.post(BASE + "requests.json?locale=en", urllib.parse.urlencode(form),
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400
    assert body(r) == [{"code": 400, "description": "The request has too many fields (at most 20)."}]
    assert counts() == before


def test_a_form_body_declared_in_another_charset_is_refused_as_django_refuses_it(client, api_key):
    before = counts()
    r = client.post(BASE + "requests.json?locale=en", urllib.parse.urlencode(leak_form(api_key)),
                    content_type="application/x-www-form-urlencoded; charset=gbk")
    assert r.status_code == 400
    assert body(r) == [{"code": 400, "description": "A form body must be UTF-8 (the request says gbk)."}]
    assert counts() == before


def test_a_form_body_not_in_utf8_is_read_as_latin1_as_django_reads_forms(client, api_key):
    form = urllib.parse.urlencode(leak_form(api_key, description="drip")).encode() + b"&last_name=M\xfcller"
    r = client.post(BASE + "requests.json", form, content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200, r.content
    assert Report.objects.get().contact.name == "Müller"


def test_errors_speak_english_when_asked(client, api_key):
    r = client.post(BASE + "requests.json?locale=en", leak_form(api_key, **{"attribute[severity]": None}))
    assert r.status_code == 400
    assert "How bad is it?" in body(r)[0]["description"]


def test_form_bodies_are_parsed_as_parse_qsl_parses_them():
    """``form_pairs`` (the fast path for ASCII bodies) gives exactly what
    ``parse_qsl`` gives, for random strings of escapes (valid, broken, split
    UTF-8, escaped separators), separators and plain characters."""
    import random

    from chengyun.open311.views import form_pairs

    pieces = ["%", "&", "=", "+", "a", "Z", "0", "9", "F", "e", "%E5", "%88", "%A", "%zz", "%2B", "%26", "%3D",
              " ", ";", "%C3%A9", "%FF", "%e4%bd%a0", "é", "北", "%%", "\n"]
    rnd = random.Random(7)
    for _ in range(20_000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 24)))
        expected = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8")
        assert form_pairs(text) == expected, text
    body = urllib.parse.urlencode({"description": "井盖缺失，行人容易踩空 (Nanjing Rd.) 100% & more", "x": ""})
    assert form_pairs(body) == [("description", "井盖缺失，行人容易踩空 (Nanjing Rd.) 100% & more"), ("x", "")]
    assert form_pairs("", 0) == urllib.parse.parse_qsl("", max_num_fields=0) == []
    for limit in (1, 2, 3):
        text = "a=1&b=2&c=3"
        if limit < 3:
            with pytest.raises(ValueError):
                urllib.parse.parse_qsl(text, max_num_fields=limit)
            with pytest.raises(ValueError):
                form_pairs(text, limit)
        else:
            assert form_pairs(text, limit) == urllib.parse.parse_qsl(text, max_num_fields=limit)


@pytest.mark.parametrize("header, language", [
    ("", "zh-hans"), ("en-GB,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-hans"),
    ("fr, en;q=0.5, zh;q=0.4", "en"), ("de", "zh-hans"), ("en;q=0", "zh-hans"), ("en;q=x, zh", "zh-hans"),
])
def test_the_answer_speaks_the_language_the_header_asks_for(client, api_key, header, language):
    for _ in range(2):  # the second time from the remembered parse
        r = client.post(BASE + "requests.json", {"api_key": "wrong"}, HTTP_ACCEPT_LANGUAGE=header)
        assert r.status_code == 403
        assert r["Content-Language"] == language


def test_a_stray_point_outside_the_city_gives_way_to_the_address(client, api_key):
    """A device's fix can stray over the boundary: with an address_string the request is taken, placed by it."""
    r = client.post(BASE + "requests.json", leak_form(api_key, long=str(f.OUTSIDE[0]), lat=str(f.OUTSIDE[1]),
                                                       address_string="区1 街道1001 和平路12号", phone="0571-88886666转801"))
    assert r.status_code == 200, r.content
    report = Report.objects.get(number=body(r)[0]["service_request_id"])
    assert (report.lon, report.lat) == (None, None) and report.area.code == "100101001"
    assert report.contact.phone == "0571-88886666转801", "an extension is a phone number too"


def test_a_relayed_contact_that_is_not_clean_is_kept_as_sent(client, api_key):
    """A partner relays what its user typed and cannot ask again: the report is not lost over it.

    The contact is kept for staff calling back, and it is never returned."""
    r = client.post(BASE + "requests.json", leak_form(api_key, phone="+44 7700 900123 (mobile)",
                                                       email="li at example dot org"))
    assert r.status_code == 200, r.content
    number = body(r)[0]["service_request_id"]
    report = Report.objects.get(number=number)
    assert (report.contact.phone, report.contact.email) == ("+44 7700 900123 (mobile)", "li at example dot org")
    shown = client.get(BASE + f"requests/{number}.json").content.decode()
    assert "7700" not in shown and "example" not in shown


def test_a_photo_sent_as_multipart_media_is_kept_stripped_for_staff_and_not_published(client, api_key):
    """Many GeoReport clients send the photo itself as a multipart ``media``
    field: checked and stripped as the portal's photos are, seen by staff only."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from ..portal.pages import jpeg_with_gps

    lon, lat = f.centre("100101001")
    photo = SimpleUploadedFile("leak.jpg", jpeg_with_gps(lon=lon, lat=lat, make="SecretCam"), "image/jpeg")
    r = client.post(BASE + "requests.json", {**leak_form(api_key), "media": photo})
    assert r.status_code == 200, r.content
    (row,) = body(r)
    report = Report.objects.get(number=row["service_request_id"])
    (stored,) = report.photos.all()
    data = stored.file.read()
    assert b"SecretCam" not in data and not Image.open(io.BytesIO(data)).getexif()
    assert (stored.exif_lon, stored.exif_lat) == pytest.approx((lon, lat), abs=1e-4)
    assert report.case is not None  # the whole pipeline ran before the answer
    (public,) = body(client.get(BASE + f"requests/{report.number}.json"))
    assert public["media_url"] is None  # citizens' photos are not published (faces, number plates)


@pytest.mark.parametrize("files, words", [
    ([("notes.txt", b"not a photo at all", "text/plain")], "media: This file is not a photo we can read"),
    ([(f"p{k}.jpg", b"x", "image/jpeg") for k in range(4)], "media: At most 3 photos."),
    ([("empty.jpg", b"", "image/jpeg")], "media: The photo is empty."),
])
def test_a_bad_media_upload_is_refused_naming_the_field_and_nothing_is_stored(client, api_key, files, words):
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = counts()
    uploads = [SimpleUploadedFile(name, content, kind) for name, content, kind in files]
    r = client.post(BASE + "requests.json", {**leak_form(api_key), "media": uploads}, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400
    assert words in body(r)[0]["description"]
    assert counts() == before


def test_media_as_text_is_refused_telling_how_to_send_a_photo(client, api_key):
    before = counts()
    r = client.post(BASE + "requests.json", json.dumps({**leak_form(api_key), "media": "aGVsbG8="}),
                    content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400
    assert body(r)[0]["description"].startswith("media: send photos as files of a multipart/form-data body")
    assert counts() == before


@pytest.mark.parametrize("name", ["media[]", "photo"])
def test_a_photo_under_another_name_is_refused_not_dropped(client, api_key, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from ..portal.pages import jpeg_with_gps

    before = counts()
    lon, lat = f.centre("100101001")
    photo = SimpleUploadedFile("leak.jpg", jpeg_with_gps(lon=lon, lat=lat), "image/jpeg")
    r = client.post(BASE + "requests.json", {**leak_form(api_key), name: photo}, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400
    assert body(r)[0]["description"] == f"media: send photos as files named media, not {name}."
    assert counts() == before
