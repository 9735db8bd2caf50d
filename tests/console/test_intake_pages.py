"""Staff intake in the console: the hotline form, the inspector's page,
report photos, and the intake parts of the case page, through HTTP."""

from __future__ import annotations

import io
import re

import pytest
from PIL import ExifTags, Image

from chengyun.audit.models import AuditRecord
from chengyun.cases import services as case_services
from chengyun.cases.models import Case
from chengyun.cases.workflow import CaseStatus
from chengyun.intake.models import ClusterWarning, DuplicateOutcome, DuplicateSuggestion, Report
from chengyun.intake.services import ReportInput, submit
from chengyun.org.models import Role
from chengyun.taxonomy.models import Category

from .. import factories as f

pytestmark = pytest.mark.django_db

PHONE = "13812345678"
STREET = "100101001"
STREET_ADDRESS = "区1 街道1001 和平路12号"  # district 100101, street 100101001 by name


def _call(client, **fields):
    data = {"token": "call-1", "phone": PHONE, "name": "王小明", "description": "水管爆裂 路面冒水",
            "address": STREET_ADDRESS, "category": "", "priority": ""}
    headers = {k: fields.pop(k) for k in list(fields) if k.startswith("HTTP_")}
    data.update(fields)
    return client.post("/console/hotline/", data, **headers)


def _png(size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _jpeg_taken_at(lon: float, lat: float) -> bytes:
    """A JPEG whose EXIF GPS block says where it was taken (degrees, minutes, seconds)."""
    def dms(v):
        d = int(v)
        m = int((v - d) * 60)
        return (float(d), float(m), round(((v - d) * 60 - m) * 60, 4))

    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: dms(lat), 3: "E", 4: dms(lon)}
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(out, "JPEG", exif=exif)
    return out.getvalue()


def _upload(content: bytes, name="photo.png", content_type="image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type=content_type)


# --------------------------------------------------------------------------- hotline


def test_hotline_form_is_ordered_for_a_call_and_works_without_js(client, staff):
    client.force_login(staff["operator"])
    page = client.get("/console/hotline/").content.decode()
    order = [page.index(f'name="{n}"') for n in ("phone", "name", "description", "address", "category", "priority")]
    assert order == sorted(order)
    assert re.search(r'name="phone"[^>]*autofocus', page)
    assert 'accesskey="s"' in page and 'type="submit"' in page
    assert 'hx-trigger="input changed delay:400ms"' in page and 'name="token"' in page
    # The categories come in groups, one per parent (a city has a hundred and more).
    picker = page[page.index('name="category"'):page.index("</select>", page.index('name="category"'))]
    assert re.findall(r'<optgroup label="([^"]+)">', picker) == ["Category 01"]  # the parent, as the factory names it
    assert re.findall(r'<option value="(\w+)"', picker) == ["0101", "0102"]


def test_hotline_call_stores_contact_apart_masked_for_others_full_after_audited_reveal(client, staff):
    operator, leader = staff["operator"], staff["leader"]
    client.force_login(operator)
    response = _call(client)
    assert response.status_code == 302
    report = Report.objects.get(source=f"user:{operator.pk}")
    case = report.case
    assert report.channel == "hotline" and report.idempotency_key == "call-1" and report.created_by == operator
    assert report.contact.phone == PHONE and report.contact.name == "王小明"
    assert PHONE not in report.description and PHONE not in case.description
    assert case.area.code == STREET and report.category.code == "0101"

    # The next, empty form says what the previous call became.
    page = client.get(response["Location"]).content.decode()
    assert report.number in page and case.number in page
    assert 'name="phone" type="tel" inputmode="tel" autocomplete="off" value=""' in page

    # The same form sent twice (double click, reload) is one call.
    assert _call(client).status_code == 302
    assert Report.objects.filter(source=f"user:{operator.pk}").count() == 1

    # A leader sees the contact masked, cannot reveal it.
    client.force_login(leader)
    page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert "138****5678" in page and PHONE not in page and "王*" in page
    assert "Show full contact" not in page
    denied = client.post(f"/console/cases/{case.number}/reports/{report.number}/reveal/", {"reason": "curious"})
    assert denied.status_code == 403 and PHONE not in denied.content.decode()
    assert not AuditRecord.objects.filter(action="contact.view").exists()

    # The operator sees it masked too until asking, with a reason; the view is audited.
    client.force_login(operator)
    page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert "138****5678" in page and PHONE not in page and "Show full contact" in page
    url = f"/console/cases/{case.number}/reports/{report.number}/reveal/"
    no_reason = client.post(url, {"reason": " "})
    assert no_reason.status_code == 400 and PHONE not in no_reason.content.decode()
    revealed = client.post(url, {"reason": "call back"})
    assert revealed.status_code == 200 and PHONE in revealed.content.decode() and "王小明" in revealed.content.decode()
    assert revealed["Cache-Control"] == "no-store"
    audit = AuditRecord.objects.get(action="contact.view")
    assert audit.actor == operator.username and audit.data["reason"] == "call back"
    assert audit.data["report"] == report.number
    # Shown once: the next page view is masked again.
    assert PHONE not in client.get(f"/console/cases/{case.number}/").content.decode()


def test_hotline_errors_are_shown_next_to_their_fields_and_store_nothing(client, staff):
    client.force_login(staff["operator"])
    page = _call(client, description="   ")
    assert page.status_code == 400
    html = page.content.decode()
    assert 'aria-describedby="e-desc"' in html and 'id="e-desc" class="error"' in html
    assert 'value="call-1"' in html, "a failed call keeps its token"
    assert re.search(r'name="description"[^>]*autofocus', html) and not re.search(r'name="phone"[^>]*autofocus', html), \
        "the cursor goes to the field to correct"
    page = _call(client, category="9999").content.decode()
    assert 'id="e-cat" class="error"' in page and "9999" in page
    page = _call(client, phone="call me maybe").content.decode()
    assert 'id="e-phone" class="error"' in page and 'value="call me maybe"' in page, "a bad number is said, and kept"
    assert not Report.objects.exists()



def test_a_failed_save_keeps_the_suggestion_panel(client, staff):
    """The operator fixing one field still sees the category, area and duplicates (JavaScript or not)."""
    client.force_login(staff["operator"])
    html = _call(client, phone="call me maybe").content.decode()
    panel = html[html.index('<aside id="suggest"'):html.index("</aside>")]
    assert 'data-code="0101"' in panel and ("Street 1001" in panel or "街道1001" in panel)
    html = _call(client, description="  ").content.decode()
    panel = html[html.index('<aside id="suggest"'):html.index("</aside>")]
    assert "data-code" not in panel, "nothing typed, nothing suggested"


def test_an_unsure_suggestion_offers_the_next_likeliest_too(client, staff, settings):
    client.force_login(staff["operator"])
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # never certain
    html = client.post("/console/hotline/suggest/", {"description": "水管 路灯", "address": ""}).content.decode()
    codes = re.findall(r'data-code="(\w+)"', html)
    assert sorted(codes) == ["0101", "0102"], "the suggestion and the other likely category, each a click away"
    settings.INTAKE_CONFIDENCE_THRESHOLD = 0.0  # always certain: one suggestion
    html = client.post("/console/hotline/suggest/", {"description": "水管 路灯", "address": ""}).content.decode()
    assert len(re.findall(r'data-code="(\w+)"', html)) == 1


def test_hotline_is_for_operators(client, staff):
    client.force_login(staff["leader"])
    assert client.get("/console/hotline/").status_code == 404
    assert client.post("/console/hotline/suggest/", {"description": "水管"}).status_code == 404


def test_suggest_panel_names_category_area_and_open_cases_nearby(client, staff):
    lon, lat = f.centre(STREET)
    earlier = submit(ReportInput(channel="web", description="自来水管道破裂 地面积水", lon=lon, lat=lat)).report.case
    assert earlier.status in (CaseStatus.NEW, CaseStatus.ACCEPTED, CaseStatus.DISPATCHED)
    client.force_login(staff["operator"])
    response = client.post("/console/hotline/suggest/", {"description": "自来水管漏水很严重", "address": STREET_ADDRESS})
    assert response.status_code == 200
    html = response.content.decode()
    assert "0101" in html and 'data-code="0101"' in html
    assert "Street 1001" in html or "街道1001" in html
    assert earlier.number in html, "an open case of the suggested category in that area is listed"
    lights = client.post("/console/hotline/suggest/", {"description": "路灯不亮 晚上很黑", "address": ""}).content.decode()
    assert 'data-code="0102"' in lights and earlier.number not in lights


def test_suggest_panel_lists_open_cases_of_the_operators_own_category_without_a_suggestion(client, staff):
    """No trained model (or text too thin to classify): the category the
    operator picked still brings up the open cases of the area."""
    lon, lat = f.centre(STREET)
    earlier = submit(ReportInput(channel="web", description="自来水管道破裂 地面积水", category="0101",
                                 lon=lon, lat=lat)).report.case
    from chengyun.intake.models import ClassifierModel

    ClassifierModel.objects.update(active=False)  # no model in use: nothing is suggested
    client.force_login(staff["operator"])
    html = client.post("/console/hotline/suggest/", {"description": "水管爆裂 路面冒水", "address": STREET_ADDRESS,
                                                      "category": "0101"}).content.decode()
    assert 'data-code="' not in html, "no suggestion"
    assert earlier.number in html, "the open case of the picked category in that area is listed"


def test_every_page_offers_the_same_categories_and_no_group(client, staff):
    """Open311's services, the portal's picker, the hotline and inspector pages:
    active categories without active sub-categories, under no inactive group."""
    from chengyun.taxonomy.models import Category

    closed_group = f.make_category(code="03")
    Category.objects.filter(pk=closed_group.pk).update(active=False)
    f.make_category(code="0301", parent=closed_group)
    emptied = f.make_category(code="04")
    gone = f.make_category(code="0401", parent=emptied)
    Category.objects.filter(pk=gone.pk).update(active=False)
    expected = {"0101", "0102", "04"}

    def offered(html: str) -> set[str]:
        return set(re.findall(r'<option value="(\d{2,4})"', html))

    portal = client.get("/report/").content.decode()
    client.force_login(staff["operator"])
    hotline = client.get("/console/hotline/").content.decode()
    client.force_login(staff["inspector"])
    inspector = client.get("/console/inspect/").content.decode()
    services = {s["service_code"] for s in client.get("/open311/v2/services.json").json()}
    assert offered(portal) == offered(hotline) == offered(inspector) == services == expected


def test_suggest_panel_shows_the_earlier_call_at_the_same_address_as_saving_will_attach_it(client, staff):
    client.force_login(staff["operator"])
    assert _call(client, category="0101", token="call-a").status_code == 302
    earlier = Report.objects.get().case
    typed = {"description": "水管爆裂 路面冒水", "address": STREET_ADDRESS, "category": "0101"}
    html = client.post("/console/hotline/suggest/", typed).content.decode()
    assert earlier.number in html and "would be attached to it" in html
    assert _call(client, category="0101", token="call-b").status_code == 302
    assert Report.objects.get(idempotency_key="call-b").case_id == earlier.pk, "saving does what the panel said"


def test_a_saved_call_changed_and_saved_again_is_a_new_call_after_a_warning(client, staff):
    client.force_login(staff["operator"])
    assert _call(client, token="call-z").status_code == 302
    first = Report.objects.get()
    again = _call(client, token="call-z", description="水管爆裂 路面冒水，井盖也被冲开了")
    html = again.content.decode()
    assert again.status_code == 400 and f"already saved, as report {first.number}" in html
    fresh = re.search(r'name="token" value="([^"]+)"', html).group(1)
    assert fresh != "call-z"
    assert _call(client, token=fresh, description="水管爆裂 路面冒水，井盖也被冲开了").status_code == 302
    assert Report.objects.count() == 2


def test_the_operator_adds_a_call_to_an_open_case_the_panel_lists(client, staff):
    """The duplicate check did not match them (other words), but the operator hears it
    is the same problem: one click adds the call to that case, no second case."""
    client.force_login(staff["operator"])
    assert _call(client, category="0101", token="call-a").status_code == 302
    earlier = Report.objects.get().case
    other_words = {"description": "家里没水了，楼下马路上都是水", "address": STREET_ADDRESS, "category": "0101"}
    html = client.post("/console/hotline/suggest/", other_words, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    button = re.search(r'<button type="submit" form="hotline-form" name="same_as" value="(\d+)"', html)
    assert button and button[1] == earlier.number, "each open case listed can take the call"

    r = _call(client, token="call-b", same_as=earlier.number, HTTP_ACCEPT_LANGUAGE="en", **other_words)
    assert r.status_code == 302
    report = Report.objects.get(idempotency_key="call-b")
    assert report.case_id == earlier.pk and report.duplicate == DuplicateOutcome.ATTACHED
    assert report.duplicate_explanation["best_case"] == earlier.number
    assert Case.objects.count() == 1
    entry = earlier.timeline.filter(action="report_attached").get()
    assert entry.data["said_by_staff"] is True and entry.actor_id == staff["operator"].pk
    shown = client.get(r["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"added to case {earlier.number} (the same problem)" in shown
    page = client.get(f"/console/cases/{earlier.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "attached by staff, who said it is the same problem" in page


def test_the_panel_says_the_operators_choice_routes_the_call(client, staff):
    client.force_login(staff["operator"])
    typed = {"description": "路灯坏了好几天", "address": STREET_ADDRESS}
    html = client.post("/console/hotline/suggest/", {**typed, "category": "0102"},
                       HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "You chose 0102" in html and "goes by the routing rules to its department at once" in html
    assert "a dispatcher will check" not in html, "no word on the classifier's certainty: the pick decides"
    # The classifier is sure of street lights; the operator picked water: saving asks a dispatcher.
    html = client.post("/console/hotline/suggest/", {**typed, "category": "0101"},
                       HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "You chose 0101" in html and "a dispatcher will check it before the call is sent on" in html
    html = client.post("/console/hotline/suggest/", typed, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "You chose" not in html
    html = client.post("/console/hotline/suggest/", {**typed, "address": "somewhere"},
                       HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "certain, but no area is found in the address: a dispatcher will send it on" in html
    assert "certain enough to route automatically" not in html
    # No area in the address, or an open case it may repeat: the pick does not route it at once.
    html = client.post("/console/hotline/suggest/", {**typed, "address": "somewhere", "category": "0102"},
                       HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No area is found in the address: a dispatcher will send the call on" in html
    assert _call(client, category="0102", token="call-l", description="路灯坏了好几天").status_code == 302
    html = client.post("/console/hotline/suggest/", {**typed, "category": "0102"},
                       HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "See the possible duplicate below" in html and "goes by the routing rules" not in html


def test_a_call_cannot_join_a_closed_or_unknown_case(client, staff):
    client.force_login(staff["operator"])
    assert _call(client, category="0101", token="call-a").status_code == 302
    case = Report.objects.get().case
    r = _call(client, token="call-b", same_as="999999999999999", HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400 and "There is no case 999999999999999 that you can see." in r.content.decode()
    Case.objects.filter(pk=case.pk).update(status=CaseStatus.CLOSED)
    r = _call(client, token="call-c", same_as=case.number, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400 and f"Case {case.number} is no longer open" in r.content.decode()
    assert Report.objects.count() == 1, "nothing stored"
    # An operator of another district who may also watch the whole city (a leader too) may not add to it.
    from chengyun.areas.models import Area
    from chengyun.org.models import RoleAssignment

    other = f.make_user(username="op-elsewhere", role=Role.OPERATOR, area=Area.objects.get(code="100102"))
    RoleAssignment.objects.create(user=other, role=Role.LEADER)  # a leader watches the whole city
    Case.objects.filter(pk=case.pk).update(status=CaseStatus.NEW)
    client.force_login(other)
    r = _call(client, token="call-d", same_as=case.number, HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 400 and f"You may not add a call to case {case.number}" in r.content.decode()
    assert Report.objects.count() == 1


# --------------------------------------------------------------------------- inspector


def _inspect(client, headers=None, **fields):
    lon, lat = f.centre(STREET)
    data = {"token": "insp-1", "lon": str(lon), "lat": str(lat), "area": "", "category": "0101",
            "description": "消防栓漏水"}
    data.update(fields)
    return client.post("/console/inspect/", data, headers=headers)


def test_an_inspector_starts_on_the_patrol_page_others_at_the_queue(client, staff):
    for who, where in (("inspector", "/console/inspect/"), ("dispatcher", "/console/")):
        client.logout()
        staff[who].set_password("pw-12345-test")
        staff[who].save()
        r = client.post("/login/", {"username": staff[who].username, "password": "pw-12345-test"})
        assert r.status_code == 302 and r["Location"] == where, who


def test_inspector_page_is_built_for_a_phone(client, staff):
    client.force_login(staff["inspector"])
    page = client.get("/console/inspect/").content.decode()
    assert 'name="viewport"' in page
    assert 'type="file" accept="image/*" capture="environment"' in page
    assert 'name="lon"' in page and 'name="lat"' in page and 'id="geo-status"' in page
    assert f'<option value="{STREET}"' in page
    assert re.search(r'value="0101" data-self-dispose="1"', page) and re.search(r'value="0102" data-self-dispose="0"', page)
    client.force_login(staff["operator"])
    assert client.get("/console/inspect/").status_code == 404


def test_inspector_fixes_0101_on_the_spot_and_the_case_is_closed(client, staff):
    client.force_login(staff["inspector"])
    response = _inspect(client, self_dispose="on", self_dispose_note="关紧了阀门")
    assert response.status_code == 302
    report = Report.objects.get(channel="inspector")
    assert report.case.status == CaseStatus.CLOSED and report.case.resolved is True
    assert report.created_by == staff["inspector"]
    page = client.get(response["Location"]).content.decode()
    assert report.number in page and report.case.number in page and "Closed" in page


def test_fixed_on_the_spot_is_refused_for_a_category_that_does_not_allow_it(client, staff):
    client.force_login(staff["inspector"])
    page = _inspect(client, category="0102", description="路灯不亮", self_dispose="on", self_dispose_note="换了灯泡")
    assert page.status_code == 400
    assert 'id="e-fixed" class="error"' in page.content.decode()
    no_note = _inspect(client, self_dispose="on", self_dispose_note="")
    assert no_note.status_code == 400 and 'id="e-note" class="error"' in no_note.content.decode()
    assert not Report.objects.exists() and not Case.objects.exists()


def test_inspector_report_with_no_place_at_all_is_refused_naming_the_grid_field(client, staff):
    client.force_login(staff["inspector"])
    page = _inspect(client, lon="", lat="", category="0102", description="路灯不亮", photo=_upload(_png()))
    assert page.status_code == 400
    assert 'id="e-area" class="error"' in page.content.decode(), "no position, no photo position, no grid"
    assert 'id="e-photo" class="error"' in page.content.decode(), "the photo must be chosen again: it says so"
    assert not Report.objects.exists() and not Case.objects.exists()


def test_closing_on_the_spot_outside_ones_own_area_says_why(client, intake_world):
    street_inspector = f.make_user(username="grid-1", role=Role.INSPECTOR, area=intake_world.areas[STREET])
    client.force_login(street_inspector)
    lon, lat = f.centre("100102001")  # another street
    page = _inspect(client, lon=str(lon), lat=str(lat), self_dispose="on", self_dispose_note="关紧了阀门",
                    headers={"accept-language": "en"})
    assert page.status_code == 400
    html = page.content.decode()
    assert re.search(r"The device puts you in [^<]*, outside the areas you patrol\. Choose your grid", html)
    assert not Report.objects.exists() and not Case.objects.exists()
    # The position stays, and the page says so (not "without the device's position").
    assert f"The position found before is kept ({lon}, {lat})." in html and "Without the device" not in html
    # Choosing one's own grid does not make a far place one's own.
    page = _inspect(client, lon=str(lon), lat=str(lat), self_dispose="on", self_dispose_note="关紧了阀门",
                    area=STREET, headers={"accept-language": "en"})
    assert page.status_code == 400
    assert re.search(r"m from the grid you chose: closing on the spot is for where you are", page.content.decode())
    assert not Report.objects.exists()
    # A position a street off (GPS by a boundary, or indoors): the grid chosen is used, the position kept.
    street = intake_world.areas[STREET]
    near = (street.max_lon + 0.001, (street.min_lat + street.max_lat) / 2)  # about 100 m into the next street
    page = _inspect(client, lon=str(near[0]), lat=str(near[1]), self_dispose="on", self_dispose_note="关紧了阀门",
                    area=STREET, headers={"accept-language": "en"})
    assert page.status_code == 302, page.content.decode()
    report = Report.objects.get()
    assert report.area.code == STREET and report.case.status == CaseStatus.CLOSED
    assert report.attributes["device_position"] == [round(near[0], 6), round(near[1], 6)]
    assert report.attributes["device_area"] == "100101002" and 50 < report.attributes["metres_outside_grid"] < 150
    client.force_login(f.make_user(username="disp-x", role=Role.DISPATCHER))
    shown = client.get(f"/console/cases/{report.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Device position" in shown and "m outside the grid the inspector chose" in shown


def test_inspector_report_without_position_uses_the_chosen_grid_and_keeps_the_photo(client, staff, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(staff["inspector"])
    response = _inspect(client, lon="", lat="", area=STREET, category="0102", description="路灯杆歪了 灯也不亮",
                        photo=_upload(_png()))
    assert response.status_code == 302
    report = Report.objects.get(channel="inspector")
    assert report.lon is None and report.area.code == STREET and report.case.area.code == STREET
    assert report.case.status not in (CaseStatus.CLOSED,)
    assert report.photos.count() == 1


def test_without_device_position_the_photo_tells_where(client, staff, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(staff["inspector"])
    response = _inspect(client, lon="", lat="", category="0102", description="路灯不亮",
                        photo=_upload(_jpeg_taken_at(120.25, 30.5), name="p.jpg", content_type="image/jpeg"))
    assert response.status_code == 302
    report = Report.objects.get(channel="inspector")
    assert (round(report.lon, 4), round(report.lat, 4)) == (120.25, 30.5)
    assert report.area.code == STREET
    with report.photos.get().file.open("rb") as fh:
        assert Image.open(fh).getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}, "the stored photo carries no position"


def test_photo_is_served_only_to_staff_who_can_see_the_case(client, staff, settings, tmp_path, intake_world):
    settings.MEDIA_ROOT = tmp_path
    lon, lat = f.centre(STREET)
    report = submit(ReportInput(channel="web", description="路灯不亮", lon=lon, lat=lat, photos=[_png()])).report
    photo = report.photos.get()
    url = f"/console/photos/{photo.pk}/"

    client.force_login(staff["operator"])
    page = client.get(f"/console/cases/{report.case.number}/").content.decode()
    assert f'src="{url}"' in page and "/media/" not in page
    ok = client.get(url)
    assert ok.status_code == 200 and ok["Content-Type"] == "image/png"
    assert b"".join(ok.streaming_content).startswith(b"\x89PNG")

    elsewhere = f.make_user(username="north", role=Role.LEADER, area=intake_world.areas["100104"])
    client.force_login(elsewhere)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


# --------------------------------------------------------------------------- the case page


def test_case_page_explains_the_classification_and_the_duplicate_check(client, staff):
    lon, lat = f.centre(STREET)
    given = submit(ReportInput(channel="web", description="路灯坏了好几天", category="0102", lon=lon, lat=lat)).report
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{given.case.number}/").content.decode()
    assert given.number in page and "chosen by the reporter" in page
    assert 'class="chip"' in page and f"model v{given.classifier_version}" in page
    assert "Duplicate check" in page


def test_dispatcher_merges_or_keeps_apart_a_possible_duplicate(client, staff):
    lon, lat = f.centre(STREET)
    submit(ReportInput(channel="web", description="水管爆裂 路面冒水", category="0101", lon=lon, lat=lat))
    grey = submit(ReportInput(channel="web", description="井盖丢了 很危险", category="0101", lon=lon, lat=lat)).report
    other_lon, other_lat = f.centre("100102001")
    submit(ReportInput(channel="web", description="水管爆裂 路面冒水", category="0101", lon=other_lon, lat=other_lat))
    grey2 = submit(ReportInput(channel="web", description="井盖丢了 很危险", category="0101", lon=other_lon,
                               lat=other_lat)).report
    assert grey.duplicate == DuplicateOutcome.ASK and grey2.duplicate == DuplicateOutcome.ASK
    first, second = grey.suggestions.get(), grey2.suggestions.get()

    client.force_login(staff["dispatcher"])
    queue = client.get("/console/?view=duplicates").content.decode()
    assert grey.case.number in queue and grey2.case.number in queue
    # Each row says which case it may repeat, with a link where the dispatcher may open it.
    row = queue[queue.index(f">{grey.case.number}<"):]
    row = row[:row.index("</tr>")]
    assert f'may repeat <a href="/console/cases/{first.candidate.number}/">{first.candidate.number}</a>' in row
    assert "水管爆裂" in row and second.candidate.number not in row
    page = client.get(f"/console/cases/{grey.case.number}/").content.decode()
    assert "Same problem: merge" in page and first.candidate.number in page and "text" in page

    response = client.post(f"/console/cases/{grey.case.number}/duplicates/{first.pk}/", {"decision": "merge"})
    assert response.status_code == 302
    first.refresh_from_db()
    grey.case.refresh_from_db()
    assert first.status == "merged" and grey.case.status == CaseStatus.MERGED
    assert grey.case.merged_into == first.candidate

    kept = client.post(f"/console/cases/{grey2.case.number}/duplicates/{second.pk}/", {"decision": "keep"},
                       follow=True).content.decode()
    second.refresh_from_db()
    grey2.case.refresh_from_db()
    # Kept apart; the classifier disputes the category the reporter chose: it waits for
    # a dispatcher (an undisputed one goes on by the rules, see test_duplicates_api).
    assert second.status == "kept" and grey2.case.status == CaseStatus.NEW
    assert f"Kept apart from case {second.candidate.number}." in kept
    assert grey2.case.number not in client.get("/console/?view=duplicates").content.decode()
    assert not DuplicateSuggestion.objects.filter(status="pending").exists()


def test_detach_a_report_that_was_attached_automatically(client, staff):
    lon, lat = f.centre(STREET)
    first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    second = submit(ReportInput(channel="hotline", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    assert second.duplicate == DuplicateOutcome.ATTACHED and second.case == first.case
    case = first.case

    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert second.number in page and first.number in page and "Detach (not the same problem)" in page
    url = f"/console/cases/{case.number}/reports/{second.number}/detach/"
    client.post(url, {"reason": ""})
    second.refresh_from_db()
    assert second.case == case, "no reason, no change"
    response = client.post(url, {"reason": "different pipe, other side of the road"})
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.case != case and second.duplicate == DuplicateOutcome.DETACHED
    messages = client.get(response["Location"]).content.decode()
    assert second.case.number in messages


def test_every_case_not_routed_automatically_waits_in_the_dispatch_tab(client, staff):
    lon, lat = f.centre(STREET)
    disputed = submit(ReportInput(channel="web", description="自来水管道破裂 地面积水", category="0102",
                                  lon=lon, lat=lat)).report.case
    assert disputed.status == CaseStatus.NEW and disputed.category.code == "0102", "the classifier disagrees"
    routed = submit(ReportInput(channel="web", description="路灯不亮 晚上很黑", lon=lon + 0.01, lat=lat)).report.case
    assert routed.status == CaseStatus.DISPATCHED
    accepted = submit(ReportInput(channel="web", description="自来水管道破裂 地面积水", category="0102",
                                  lon=lon, lat=lat + 0.01)).report.case
    case_services.accept_case(accepted, by=staff["dispatcher"])
    assert Case.objects.get(pk=accepted.pk).status == CaseStatus.ACCEPTED
    client.force_login(staff["dispatcher"])
    waiting = client.get("/console/?view=to_dispatch").content.decode()
    assert disputed.number in waiting and routed.number not in waiting
    assert accepted.number in waiting, "accepted, not yet sent on: still the dispatcher's"
    assert disputed.number not in client.get("/console/?view=unclassified").content.decode(), "it has a category"
    assert "Waiting for dispatch" in waiting


def test_reclassify_a_case_nobody_classified(client, staff):
    lon, lat = f.centre(STREET)
    case = case_services.create_case(title="说不清的问题", description="有点问题", lon=lon, lat=lat, by=staff["operator"])
    client.force_login(staff["dispatcher"])
    assert case.number in client.get("/console/?view=unclassified").content.decode()
    page = client.get(f"/console/cases/{case.number}/").content.decode()
    assert "Change category" in page and "The classifier suggests" in page
    response = client.post(f"/console/cases/{case.number}/reclassify/", {"category": "0102", "note": "路灯"})
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.category.code == "0102"
    assert case.category_corrections.filter(to_category__code="0102").exists()
    assert case.number not in client.get("/console/?view=unclassified").content.decode()
    client.force_login(staff["leader"])
    client.post(f"/console/cases/{case.number}/reclassify/", {"category": "0101"})
    case.refresh_from_db()
    assert case.category.code == "0102", "a leader may not reclassify"


def test_cluster_case_shows_its_warning_and_reports(client, staff, settings):
    lon, lat = f.centre(STREET)
    # Three leaks about 200 m apart: too far to be one case, close enough to be a cluster.
    points = [(lon, lat), (lon, lat + 0.0018), (lon + 0.0021, lat + 0.0009)]
    settings.LANGUAGE_CODE = "zh-hans"  # the site's language, in which the platform stores its titles
    reports = [submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=x, lat=y)).report
               for x, y in points]
    warning = ClusterWarning.objects.get()
    assert warning.case is not None and warning.case.title.startswith("智能发现")
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{warning.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Cluster warning" in page
    for r in reports:
        assert r.number in page and r.case.number in page
    # Its title in the reader's language, on the case page and in the queue.
    assert "Smart discovery: 3 reports of" in page and "智能发现：" not in page
    assert "raised it from the cluster's reports" in page and "registered directly" not in page
    queue_page = client.get("/console/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Smart discovery: 3 reports of" in queue_page and "智能发现：" not in queue_page
    # Found by its category's English name, though its stored title is Chinese.
    found = client.get("/console/", {"q": "Category 0101"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert warning.case.number in found


def test_one_incident_its_reports_cases_merge_into_the_warnings_case(client, staff):
    lon, lat = f.centre(STREET)
    points = [(lon, lat), (lon, lat + 0.0018), (lon + 0.0021, lat + 0.0009)]
    reports = [submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=x, lat=y)).report
               for x, y in points]
    warning = ClusterWarning.objects.get()
    dispatcher = staff["dispatcher"]
    client.force_login(dispatcher)
    url = f"/console/cases/{warning.case.number}/cluster/merge/"
    page = client.get(f"/console/cases/{warning.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f'action="{url}"' in page
    members = [Case.objects.get(pk=r.case_id) for r in reports]
    sent_on = [c for c in members if c.status == CaseStatus.DISPATCHED]
    assert sent_on, "the rules sent the calls' cases on before the warning was raised"
    case_services.recall_case(sent_on[0], by=dispatcher, reason="one incident")  # recalled: it may be merged
    shown = client.get(client.post(url, HTTP_ACCEPT_LANGUAGE="en")["Location"], HTTP_ACCEPT_LANGUAGE="en")
    html = shown.content.decode()
    merged = Case.objects.get(pk=sent_on[0].pk)
    assert merged.status == CaseStatus.MERGED and merged.merged_into_id == warning.case_id
    assert f"Merged into this case: {merged.number}." in html
    for other in sent_on[1:]:
        assert Case.objects.get(pk=other.pk).status == CaseStatus.DISPATCHED, "a case already sent on is left"
        assert other.number in html.split("Not merged:")[1], "and named, with why"
    assert warning.case.timeline.filter(action="merged_in").count() == 1
    # A case reclassified since is not swallowed: it is named, with its new category.
    moved = sent_on[1]
    case_services.recall_case(Case.objects.get(pk=moved.pk), by=dispatcher, reason="not a leak")
    case_services.reclassify_case(Case.objects.get(pk=moved.pk), by=dispatcher, category=Category.objects.get(code="0102"))
    html = client.get(client.post(url, HTTP_ACCEPT_LANGUAGE="en")["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert Case.objects.get(pk=moved.pk).status != CaseStatus.MERGED
    assert f"{moved.number} (now of another category" in html


def test_a_warning_by_area_says_so_on_its_case(client, staff):
    client.force_login(staff["operator"])
    for i, house in enumerate(("和平路1号", "和平路9号", "幸福路3号")):
        assert _call(client, address=f"区1 街道1001 {house}", category="0101", token=f"c-{i}").status_code == 302
    warning = ClusterWarning.objects.get()
    assert warning.by_area
    client.force_login(staff["dispatcher"])
    page = client.get(f"/console/cases/{warning.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "in Street 1001, calls without a position among them" in page


def test_the_inspector_cannot_file_under_a_group(client, staff):
    client.force_login(staff["inspector"])
    response = _inspect(client, category="01", token="insp-group")
    assert response.status_code == 400 and "group of categories" in response.content.decode()
    assert not Report.objects.exists()


def test_the_timeline_names_the_platform_in_the_readers_language(client, staff):
    lon, lat = f.centre(STREET)
    case = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).case
    assert case.status == CaseStatus.DISPATCHED
    client.force_login(staff["dispatcher"])
    zh = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    timeline = zh[zh.index('<ol class="timeline">'):]
    assert "受理流水线（自动）" in timeline and ">intake<" not in timeline
    en = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "the intake pipeline" in en


def test_the_words_that_drove_an_english_suggestion_are_words_of_the_text(client, staff):
    """The model reads character n-grams; an English reader is shown the words they come from."""
    client.force_login(staff["operator"])
    text = "the street lamp is broken and flickering at night"
    html = client.post("/console/hotline/suggest/", {"description": text, "address": ""}).content.decode()
    chips = re.findall(r'<span class="chip">([^<]+)</span>', html)
    assert chips and all(chip in text.split() for chip in chips), chips
    zh = client.post("/console/hotline/suggest/", {"description": "路灯不亮 晚上很黑", "address": ""}).content.decode()
    assert all(chip in "路灯不亮 晚上很黑" for chip in re.findall(r'<span class="chip">([^<]+)</span>', zh))


def _listed(page: str) -> set[str]:
    """The case numbers a queue page lists (its rows, not the search echoed in the page)."""
    body = page[page.index('<tbody'):page.index('</tbody>')]
    return set(re.findall(r'href="/console/cases/(\d+)/"', body))


def test_a_caller_s_tracking_number_finds_their_case_in_the_queue(client, staff, settings):
    """The search takes the caller's tracking number (R…, or its 16 digits alone) to the
    case, or the case it was merged into."""
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # the cases wait for a dispatcher (they may be merged)
    lon, lat = f.centre(STREET)
    first = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat)).report
    other = submit(ReportInput(channel="web", description="路灯不亮 晚上很黑", lon=lon + 0.05, lat=lat)).report
    client.force_login(staff["dispatcher"])
    assert _listed(client.get("/console/", {"q": other.number}).content.decode()) == {other.case.number}
    assert _listed(client.get("/console/", {"q": other.number.lower()}).content.decode()) == {other.case.number}
    # Read out over the phone, the R is often lost: 16 digits with a right check digit
    # are a report's number (a case's has 15).
    assert _listed(client.get("/console/", {"q": other.number[1:]}).content.decode()) == {other.case.number}
    misheard = other.number[:-1] + str((int(other.number[-1]) + 1) % 10)
    page = client.get("/console/", {"q": misheard}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "one digit is wrong" in page and "0 cases" in page and not _listed(page)
    assert "one digit is wrong" not in client.get("/console/", {"q": other.number}).content.decode()
    case_services.merge_case(other.case, into=first.case, by=staff["operator"], note="same")
    page = client.get("/console/", {"q": other.number}).content.decode()
    assert first.case.number in _listed(page), "merged: the case it joined"


def test_handlers_and_inspectors_see_their_cases_without_the_intake_tabs(client, staff):
    for user in (staff["water"], staff["inspector"]):
        client.force_login(user)
        page = client.get("/console/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "view=to_dispatch" not in page and "view=duplicates" not in page, user.username
    client.force_login(staff["dispatcher"])
    assert "view=to_dispatch" in client.get("/console/").content.decode()


def test_the_platforms_own_notes_are_in_the_readers_language(client, staff):
    from django.utils import translation

    lon, lat = f.centre(STREET)
    with translation.override("zh-hans"):  # the worker's language
        report = submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=lon, lat=lat,
                                    category="0101")).report
    assert report.case.status == CaseStatus.DISPATCHED
    client.force_login(staff["dispatcher"])
    en = client.get(f"/console/cases/{report.case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Dispatched automatically by the routing rules." in en and "自动派遣" not in en
    assert "Accepted automatically: the reporter chose the category." in en
    zh = client.get(f"/console/cases/{report.case.number}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "已按派遣规则自动派遣。" in zh


def test_the_hotline_panel_shows_the_confidence_the_case_gets(client, staff):
    client.force_login(staff["operator"])
    description = "路灯不亮\n晚上很黑 水管也在漏"  # two lines: the title is the first
    panel = client.post("/console/hotline/suggest/", {"description": description, "address": ""}).content.decode()
    percent = int(re.search(r"(\d+)%", panel).group(1))
    assert _call(client, description=description, address=STREET_ADDRESS).status_code == 302
    report = Report.objects.get(source=f"user:{staff['operator'].pk}")
    assert round(report.confidence * 100) == percent
    page = client.get(f"/console/cases/{report.case.number}/").content.decode()
    assert f"{percent}%" in page, "shown as the panel shows it"


def test_chinese_term_chips_are_the_stretch_of_the_text_their_ngrams_cover():
    from chengyun.console.report_panel import term_chips

    terms = [("路灯", 1.0), ("灯不", 0.5), ("不亮", 0.4), ("很黑", 0.35)]
    assert term_chips(terms, "路灯不亮\n晚上很黑") == ["路灯不亮", "很黑"]
    assert term_chips(terms) == ["路灯", "灯不", "不亮", "很黑"], "without the text: the n-grams as they are"
    long = [("一二", 1.0), ("二三", 1.0), ("三四", 1.0), ("四五", 1.0), ("五六", 1.0), ("六七", 1.0), ("七八", 1.0),
            ("八九", 1.0)]
    assert term_chips(long, "一二三四五六七八九")[0] == "一二", "a stretch too long to read at a glance is not made"


def test_term_chips_leave_out_light_fragments_and_pieces_of_other_chips():
    from chengyun.console.report_panel import term_chips

    text = "我们小区门口那条路上的路灯已经坏了，晚上黑漆漆的"
    terms = [("路灯", 2.0), ("路", 1.1), ("晚上黑", 0.9), ("口那", 0.4), ("坏了", 0.7)]
    assert term_chips(terms, text) == ["路灯", "晚上黑", "坏了"]


def test_the_queue_filters_by_district_and_category_and_names_the_district(client, staff):
    client.force_login(staff["operator"])
    assert _call(client, category="0101", token="q-1").status_code == 302
    case = Report.objects.get().case
    client.force_login(staff["dispatcher"])
    page = client.get("/console/", {"status": "", "area": "100101"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert case.number in page and "District 1 ›" in page
    assert case.number not in _listed(client.get("/console/", {"status": "", "area": "100102"}).content.decode())
    assert case.number in _listed(client.get("/console/", {"status": "", "category": "0101"}).content.decode())
    assert case.number not in _listed(client.get("/console/", {"status": "", "category": "0102"}).content.decode())


def test_the_district_filter_offers_the_districts_of_ones_own_area(client, staff, intake_world):
    import re as _re

    def offered(user) -> list[str]:
        client.force_login(user)
        page = client.get("/console/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        select = page[page.index('<select name="area">'):]
        return _re.findall(r'<option value="(\d+)"', select[:select.index("</select>")])

    street = f.make_user(username="street-inspector", role=Role.INSPECTOR, area=intake_world.areas["100102001"])
    assert offered(street) == ["100102"], "an inspector of one street: their district only"
    assert len(offered(staff["dispatcher"])) == len(f.DISTRICT_BOUNDS), "a city-wide dispatcher: every district"
    assert offered(staff["water"]) == ["100101"], "a district's department: its district"


def test_a_case_placed_nowhere_says_so_rather_than_outside_the_city(client, staff):
    client.force_login(staff["operator"])
    assert _call(client, token="nowhere-1", address="somewhere unknown").status_code == 302
    case = Report.objects.get().case
    assert case.area is None
    client.force_login(f.make_user(username="root-nowhere", superuser=True))  # a case without an area: the city's
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "not found: no position, and no area named in the address" in page and "outside the city" not in page
