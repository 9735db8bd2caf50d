"""Reporting a problem through the public form, as a browser without
JavaScript sends it (the map only fills in the same longitude/latitude fields)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from chengyun.cases.errors import CaseInvalid
from chengyun.cases.models import Case
from chengyun.intake.models import Report, ReporterContact, ReportPhoto
from chengyun.intake.photos import clean_photo
from chengyun.portal.forms import ReportForm

from .. import factories as f
from .pages import EN, ZH, jpeg_with_gps, report_form

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int, int]:
    return Report.objects.count(), Case.objects.count(), ReportPhoto.objects.count(), ReporterContact.objects.count()


def sent(response) -> Report:
    """The report a successful POST made (it redirects to the confirmation page)."""
    assert response.status_code == 302, response.content.decode()[:2000]
    number = re.fullmatch(r"/report/received/(R\d+)/", response["Location"]).group(1)
    return Report.objects.select_related("case", "area", "contact").get(number=number)


def test_report_with_coordinates_gets_a_tracking_number(client, intake_world):
    lon, lat = f.centre("100101001")
    data = report_form(client, description="水管爆裂，路面一直冒水", lon=f"{lon:.6f}", lat=f"{lat:.6f}")
    report = sent(client.post("/report/", data, **ZH))
    assert (report.channel, report.source, report.idempotency_key) == ("web", "portal", data["token"])
    assert (report.lon, report.lat) == pytest.approx((lon, lat))
    assert report.area.code == "100101001" and report.case is not None
    assert report.category.code == "0101" and not report.category_given, "the city decided the category"
    assert report.contact is None, "no contact given, none stored"

    page = client.get(f"/report/received/{report.number}/", **ZH).content.decode()
    assert f'<p class="tracking-number" id="tracking-number">{report.number}</p>' in page
    assert f'href="/track/{report.number}/"' in page
    assert '<html lang="zh-Hans"' in page


def test_chosen_category_and_contact_are_kept(client, intake_world):
    lon, lat = f.centre("100102002")
    report = sent(client.post("/report/", report_form(
        client, category="0102", description="The lamp on the corner is out", lon=str(lon), lat=str(lat),
        name="Li Si", phone="138 1234 5678", email="li@example.org",
    ), **EN))
    assert report.category.code == "0102" and report.category_given
    assert (report.contact.name, report.contact.phone, report.contact.email) == ("Li Si", "138 1234 5678", "li@example.org")


@pytest.mark.parametrize(("address", "area"), [
    ("区1 街道1001 幸福路12号门口", "100101001"),
    ("outside no. 3, District 2", "100102"),
])
def test_report_with_only_an_address_is_placed_in_the_named_area(client, intake_world, address, area):
    report = sent(client.post("/report/", report_form(client, description="路灯不亮 晚上很黑", address=address), **ZH))
    assert report.lon is None and report.lat is None
    assert report.address == address and report.area.code == area


def test_photo_position_is_used_and_its_metadata_is_not_stored(client, intake_world):
    lon, lat = f.centre("100104001")
    photo = SimpleUploadedFile("IMG_0001.jpg", jpeg_with_gps(lon=lon, lat=lat, make="SecretCam"), "image/jpeg")
    report = sent(client.post("/report/", {**report_form(client, description="水管漏水 已经流了一上午"), "photo": photo}))
    assert (report.lon, report.lat) == pytest.approx((lon, lat), abs=1e-4)
    assert report.area.code == "100104001"
    stored = report.photos.get()
    assert (stored.exif_lon, stored.exif_lat) == pytest.approx((lon, lat), abs=1e-4)
    with stored.file.open("rb") as fh:
        content = fh.read()
    assert b"SecretCam" not in content and b"Exif" not in content
    with Image.open(io.BytesIO(content)) as img:
        assert img.format == "JPEG" and len(img.getexif()) == 0


def test_a_typed_address_wins_over_where_the_photo_was_taken(client, intake_world):
    """The photo's place stands in only when the reporter says nothing of the place: an
    old photo, or one taken from across the river, must not move the report to another district."""
    lon, lat = f.centre("100104001")
    photo = SimpleUploadedFile("IMG_0002.jpg", jpeg_with_gps(lon=lon, lat=lat, make="Cam"), "image/jpeg")
    form = report_form(client, description="路灯不亮 晚上很黑", address="区1 街道1001 幸福路12号门口")
    report = sent(client.post("/report/", {**form, "photo": photo}, **ZH))
    assert report.lon is None and report.area.code == "100101001"
    assert (report.photos.get().exif_lon, report.photos.get().exif_lat) == pytest.approx((lon, lat), abs=1e-4), \
        "staff still see where the photo was taken"


def test_an_address_that_places_nothing_leaves_the_place_to_the_photo(client, intake_world):
    lon, lat = f.centre("100104001")
    photo = SimpleUploadedFile("IMG_0003.jpg", jpeg_with_gps(lon=lon, lat=lat, make="Cam"), "image/jpeg")
    form = report_form(client, description="路灯不亮 晚上很黑", address="小区大门口")
    report = sent(client.post("/report/", {**form, "photo": photo}, **ZH))
    assert (report.lon, report.lat) == pytest.approx((lon, lat), abs=1e-4) and report.area.code == "100104001"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_no_metadata_of_any_kind_reaches_the_stored_photo(fmt):
    """Comments, XMP and text chunks carry what people type into them (a name,
    a phone number); EXIF the camera and the place. None of it is stored."""
    from PIL import PngImagePlugin

    img = Image.new("RGB", (40, 30), (10, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><dc:creator>Wang 13812345678</dc:creator></rdf:RDF></x:xmpmeta>'
    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", exif=exif, comment=b"call Wang 13812345678", xmp=xmp)
    elif fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "call Wang 13812345678")
        text.add_itxt("XML:com.adobe.xmp", xmp.decode())
        img.save(out, "PNG", pnginfo=text, exif=exif)
    else:
        img.save(out, "WEBP", exif=exif, xmp=xmp)
    assert b"13812345678" in out.getvalue() and b"SecretCam" in out.getvalue()
    clean = clean_photo(out.getvalue())
    assert b"13812345678" not in clean.content and b"SecretCam" not in clean.content and b"xmpmeta" not in clean.content
    with Image.open(io.BytesIO(clean.content)) as stored:
        assert stored.format == fmt and stored.size == (40, 30)
        assert len(stored.getexif()) == 0
        assert not {"comment", "xmp", "Comment", "XML:com.adobe.xmp", "exif"} & set(stored.info)


def test_a_phone_photo_with_a_second_image_is_taken_as_its_first_jpeg(client, intake_world):
    """Many phones save HDR photos as JPEGs with a second image after the first
    (Pillow calls them MPO): the photo is the first, stored as a plain JPEG,
    with its place used and its metadata gone."""
    lon, lat = f.centre("100104001")
    first = Image.open(io.BytesIO(jpeg_with_gps(lon=lon, lat=lat, make="SecretCam")))
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48), (0, 0, 255))],
               exif=first.getexif())
    with Image.open(io.BytesIO(out.getvalue())) as probe:
        assert probe.format == "MPO" and probe.n_frames == 2
    photo = SimpleUploadedFile("PXL_0001.jpg", out.getvalue(), "image/jpeg")
    report = sent(client.post("/report/", {**report_form(client, description="水管漏水 已经流了一上午"), "photo": photo}))
    assert (report.lon, report.lat) == pytest.approx((lon, lat), abs=1e-4)
    stored = report.photos.get()
    with stored.file.open("rb") as fh:
        content = fh.read()
    assert b"SecretCam" not in content
    with Image.open(io.BytesIO(content)) as img:
        assert img.format == "JPEG" and getattr(img, "n_frames", 1) == 1 and img.size == (64, 48)
        assert img.getpixel((10, 10))[0] > 150, "the first image, the red one, is the photo"


def test_a_png_keeps_its_transparent_colour():
    img = Image.new("P", (20, 10), 0)
    img.putpalette([255, 255, 255, 200, 30, 30] + [0, 0, 0] * 254)
    img.paste(1, (0, 0, 10, 10))
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    with Image.open(io.BytesIO(clean_photo(out.getvalue()).content)) as stored:
        assert stored.info.get("transparency") == 0
        assert stored.convert("RGBA").getpixel((15, 5))[3] == 0, "the see-through half stays see-through"


def test_a_pin_wins_over_the_photo_position(client, intake_world):
    pin = f.centre("100101002")
    photo = SimpleUploadedFile("p.jpg", jpeg_with_gps(lon=121.25, lat=31.5), "image/jpeg")
    report = sent(client.post("/report/", {
        **report_form(client, description="水管漏水", lon=str(pin[0]), lat=str(pin[1])), "photo": photo,
    }))
    assert report.area.code == "100101002"


def test_a_file_that_is_not_a_photo_is_refused_on_the_photo_field(client, intake_world):
    before = counts()
    fake = SimpleUploadedFile("photo.jpg", b"%PDF-1.4 this is a document, not a photo", "image/jpeg")
    response = client.post("/report/", {
        **report_form(client, description="路灯不亮", address="区1", name="王五", phone="13900001111"), "photo": fake,
    }, **EN)
    assert response.status_code == 200
    html = response.content.decode()
    assert counts() == before, "nothing is stored"
    error = re.search(r'<p class="field-error" id="id_photo_error">(.*?)</p>', html, re.S).group(1)
    assert "photo" in error.lower()
    assert re.search(r'<input type="file" name="photo"[^>]*aria-invalid="true"[^>]*aria-describedby="[^"]*id_photo_error', html)
    assert '<a href="#id_photo">' in html, "the error summary links to the field"
    assert 'value="王五"' in html and 'value="13900001111"' in html


def test_the_same_report_sent_again_from_a_form_fetched_anew_makes_one_report(client, intake_world):
    """Back after sending: the browser may fetch the form again (a new key) and put back
    what was typed. Sent again, it is the same report: one, and the page says so."""
    lon, lat = f.centre("100103001")
    typed = {"description": "路灯坏了好几天", "lon": str(lon), "lat": str(lat)}
    first = client.post("/report/", report_form(client, **typed))
    number = first["Location"].rstrip("/").split("/")[-1]
    again = client.post("/report/", report_form(client, **typed), **EN)  # a new token
    assert again.status_code == 302 and again["Location"] == f"/report/received/{number}/?again=1"
    assert Report.objects.count() == 1
    page = client.get(again["Location"], **EN).content.decode()
    assert "This report was already sent" in page and number in page
    changed = client.post("/report/", report_form(client, **{**typed, "description": "路灯坏了好几天，灯杆也歪了"}))
    assert changed.status_code == 302 and Report.objects.count() == 2, "something new is a new report"
    with_email = client.post("/report/", report_form(client, **typed, email="li@example.org", notify="on"))
    assert with_email.status_code == 302 and "again" not in with_email["Location"]
    assert Report.objects.count() == 3, "an email and a wish for messages added after Back are not thrown away"


def test_the_same_form_sent_twice_makes_one_report(client, intake_world):
    before = counts()
    lon, lat = f.centre("100103001")
    data = report_form(client, description="路灯坏了好几天", lon=str(lon), lat=str(lat), phone="13800000000")
    first = client.post("/report/", data)
    second = client.post("/report/", data)
    assert first["Location"] == second["Location"]
    assert counts()[:2] == (before[0] + 1, before[1] + 1)
    assert Report.objects.filter(source="portal", idempotency_key=data["token"]).count() == 1
    assert report_form(client)["token"] != data["token"], "every form gets a token of its own"


def test_a_sent_form_changed_and_sent_again_is_a_new_report_after_a_warning(client, intake_world):
    """Back button, an edit, Send: the edit is not lost behind the first report's page."""
    lon, lat = f.centre("100103001")
    data = report_form(client, description="路灯坏了好几天", lon=str(lon), lat=str(lat))
    first = sent(client.post("/report/", data))
    again = client.post("/report/", {**data, "description": "路灯坏了好几天，旁边的井盖也松了"}, **EN)
    html = again.content.decode()
    assert again.status_code == 200 and Report.objects.count() == 1
    assert f"This form was already sent, as report {first.number}" in html
    fresh = re.search(r'name="token" value="([^"]+)"', html).group(1)
    assert fresh != data["token"], "the form now carries a new key"
    second = sent(client.post("/report/", {**data, "description": "路灯坏了好几天，旁边的井盖也松了", "token": fresh}))
    assert second.number != first.number and Report.objects.count() == 2


def test_missing_description_names_the_field_and_keeps_the_rest(client, intake_world):
    before = counts()
    data = report_form(client, category="0102", description="   ", address="区1 幸福路", name="李四",
                       phone="13812345678", lon="abc", lat="31")
    response = client.post("/report/", data, **EN)
    html = response.content.decode()
    assert response.status_code == 200 and counts() == before
    assert "<title>Error: Report a problem" in html
    summary = re.search(r'<div class="error-summary" id="error-summary" tabindex="-1" autofocus.*?</div>\s*</div>',
                        html, re.S).group(0)
    assert html.index('id="error-summary"') < html.index('<form method="post" enctype'), "the summary comes first"
    assert '<a href="#id_description">Describe the problem: Enter a description of the problem.</a>' in summary
    assert '<a href="#id_lon">Longitude: Enter a number.</a>' in summary
    assert re.search(r'<textarea name="description"[^>]*aria-invalid="true"'
                     r'[^>]*aria-describedby="id_description_helptext id_description_error"', html)
    assert 'id="id_description_error"' in html
    # Everything else the person typed is still there, with the same form token.
    assert '<option value="0102" selected>' in html
    assert 'value="区1 幸福路"' in html and 'value="李四"' in html and 'value="13812345678"' in html
    assert f'name="token" value="{data["token"]}"' in html


def test_errors_come_in_the_users_language(client, intake_world):
    data = report_form(client, description="路灯不亮", lon="abc", lat="31")
    html = client.post("/report/", data, **ZH).content.decode()
    assert '<html lang="zh-Hans"' in html
    assert '<a href="#id_lon">经度：输入一个数字。</a>' in html
    assert Report.objects.count() == 0


def test_refusals_of_the_intake_pipeline_land_on_the_matching_field(intake_world):
    form = ReportForm(data={"description": "x", "address": "区1"})
    assert form.is_valid()
    try:
        clean_photo(b"not an image", field="media")
    except CaseInvalid as exc:
        form.add_intake_error(exc)
    form.add_intake_error(CaseInvalid("too far east", field="long"))
    form.add_intake_error(CaseInvalid("something else", field="channel"))
    assert list(form.errors) == ["photo", "lon", "__all__"]


def _plain_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 30, 200)).save(out, "JPEG")
    return out.getvalue()


def _field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="id_{field}_error">(.*?)</p>', html, re.S)
    assert found, f"no error shown on {field}"
    return found.group(1)


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({}, "address", "or add a photo that knows where it was taken"),  # nowhere: no district could take it
    ({"lon": str(f.OUTSIDE[0]), "lat": str(f.OUTSIDE[1])}, "lat", "outside the city"),
])
def test_a_report_needs_a_place_in_the_city(client, intake_world, fields, field, words):
    before = counts()
    response = client.post("/report/", report_form(client, description="路灯不亮 晚上很黑", phone="13812345678",
                                                   **fields), **EN)
    assert response.status_code == 200 and counts() == before, "nothing is stored"
    html = response.content.decode()
    assert words in _field_error(html, field)
    assert 'value="13812345678"' in html, "what was typed is kept"


def test_a_photo_that_knows_its_place_is_place_enough(client, intake_world):
    lon, lat = f.centre("100102001")
    photo = SimpleUploadedFile("p.jpg", jpeg_with_gps(lon=lon, lat=lat), "image/jpeg")
    report = sent(client.post("/report/", {**report_form(client, description="井盖缺失"), "photo": photo}))
    assert report.area.code == "100102001"


def test_a_photo_without_a_place_does_not_stand_in_for_one(client, intake_world):
    photo = SimpleUploadedFile("p.jpg", _plain_jpeg(), "image/jpeg")
    response = client.post("/report/", {**report_form(client, description="井盖缺失"), "photo": photo}, **EN)
    assert response.status_code == 200 and "give its coordinates" in _field_error(response.content.decode(), "address")


def test_a_photo_over_the_size_limit_is_refused_on_the_photo_field(client, intake_world, settings):
    settings.PHOTO_MAX_BYTES = 50_000
    before = counts()
    big = SimpleUploadedFile("big.jpg", _plain_jpeg() + b"\0" * 60_000, "image/jpeg")
    response = client.post("/report/", {**report_form(client, description="井盖缺失", address="区1"), "photo": big}, **EN)
    assert response.status_code == 200 and counts() == before
    assert "too large" in _field_error(response.content.decode(), "photo")


def test_a_photo_taken_outside_the_city_does_not_place_the_report(client, intake_world):
    photo = lambda: SimpleUploadedFile("p.jpg", jpeg_with_gps(lon=f.OUTSIDE[0], lat=f.OUTSIDE[1]), "image/jpeg")  # noqa: E731
    response = client.post("/report/", {**report_form(client, description="井盖缺失"), "photo": photo()}, **EN)
    error = _field_error(response.content.decode(), "address")
    assert response.status_code == 200 and "taken outside the city" in error and "give its coordinates" in error
    report = sent(client.post("/report/", {**report_form(client, description="井盖缺失", address="区1"), "photo": photo()}))
    assert report.lon is None and report.area.code == "100101", "the address places it, not the photo"
