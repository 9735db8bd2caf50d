"""Open311 fixtures: the intake world, a service definition with one
question of every datatype on the water-leak service (0101), a partner's
API key, and small helpers to call the endpoints."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

from chengyun.cases.models import Case
from chengyun.intake.models import Report, ReporterContact
from chengyun.open311.models import Datatype, ServiceAttribute
from chengyun.open311.services import create_api_key

from .. import factories as f
from ..intake.conftest import intake_world, staff  # noqa: F401  (shared fixtures)

BASE = "/open311/v2/"


@pytest.fixture(autouse=True)
def machine_api_middleware(request, settings):
    """Django's test client builds its handler from ``MIDDLEWARE``; production
    serves Open311 with ``MACHINE_API_MIDDLEWARE`` (``chengyun.wsgi``). The
    Open311 tests run with the latter, but for those that use the site too
    (the admin: ``@pytest.mark.site_middleware``)."""
    if request.node.get_closest_marker("site_middleware") is None:
        settings.MIDDLEWARE = settings.MACHINE_API_MIDDLEWARE


@pytest.fixture
def services_world(intake_world):  # noqa: F811  (the fixture imported above)
    leak = intake_world.categories["0101"]
    leak.name, leak.name_en = "水管漏水", "Water leak"
    leak.keywords_zh, leak.keywords_en = ["漏水", "爆管"], ["leak", "burst pipe"]
    leak.save()
    parent = intake_world.categories["01"]
    parent.name, parent.name_en = "供水设施", "Water supply"
    parent.save()
    lights = intake_world.categories["0102"]
    lights.name, lights.name_en = "路灯", "Street lights"
    lights.save()

    def attr(code, datatype, order, **kw):
        return ServiceAttribute.objects.create(category=leak, code=code, datatype=datatype, order=order, **kw)

    attr("severity", Datatype.SINGLEVALUELIST, 1, required=True, description="漏水程度", description_en="How bad is it?",
         values=[{"key": "drip", "name": "滴漏", "name_en": "Dripping"},
                 {"key": "flood", "name": "大量冒水", "name_en": "Flooding"}])
    attr("affected", Datatype.MULTIVALUELIST, 2, description="影响", description_en="What is affected?",
         values=[{"key": "road", "name": "道路", "name_en": "Road"}, {"key": "homes", "name": "住户", "name_en": "Homes"}])
    attr("depth_cm", Datatype.NUMBER, 3, description="积水深度", description_en="Water depth (cm)",
         datatype_description="厘米", datatype_description_en="centimetres")
    attr("since", Datatype.DATETIME, 4, description="开始时间", description_en="Since when?")
    attr("landmark", Datatype.STRING, 5, description="附近地标", description_en="Nearby landmark")
    attr("details", Datatype.TEXT, 6, description="补充说明", description_en="More details")
    attr("note", Datatype.STRING, 7, variable=False, description="紧急情况请拨打12345",
         description_en="In an emergency call 12345")
    return intake_world


@pytest.fixture
def api_key(services_world):
    key, raw = create_api_key("Civic App", by="test", contact_note="ops@example.org")
    key.raw = raw
    return key


def counts() -> tuple[int, int, int]:
    return Report.objects.count(), Case.objects.count(), ReporterContact.objects.count()


def body(response):
    """JSON rows, or the XML root element."""
    if response["Content-Type"].startswith("text/xml"):
        return ET.fromstring(response.content)
    return json.loads(response.content)


def leak_form(key, *, at="100101001", **extra) -> dict:
    lon, lat = f.centre(at)
    form = {
        "api_key": key.raw, "service_code": "0101", "lat": str(lat), "long": str(lon),
        "description": "水管爆裂，路面一直冒水", "attribute[severity]": "flood",
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}
