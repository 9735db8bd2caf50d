"""Discovery, the service list and service definitions, in JSON and XML."""

from __future__ import annotations

import pytest

from .conftest import BASE, body


def test_discovery_json_and_xml(client, services_world):
    r = client.get(BASE + "discovery.json")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/json; charset=utf-8"
    data = body(r)
    assert {"changeset", "contact", "key_service", "endpoints"} <= set(data)
    (endpoint,) = data["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["type"] == "production"
    assert endpoint["formats"] == ["text/xml", "application/json"]

    r = client.get(BASE + "discovery.xml")
    assert r["Content-Type"] == "text/xml; charset=utf-8"
    assert r.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = body(r)
    assert root.tag == "discovery"
    assert root.findtext("endpoints/endpoint/url") == "http://testserver/open311/v2"
    assert [x.text for x in root.findall("endpoints/endpoint/formats/format")] == ["text/xml", "application/json"]


def test_the_endpoints_own_address_leads_to_discovery_and_discovery_says_whom_to_contact(client, services_world,
                                                                                         settings):
    r = client.get(BASE)
    assert r.status_code == 302 and r["Location"] == BASE + "discovery.json"
    settings.PUBLIC_URL = "https://12345.example.gov.cn"
    assert body(client.get(BASE + "discovery.json", {"locale": "en"}))["contact"] == (
        "The city operations centre: https://12345.example.gov.cn")
    settings.OPEN311_CONTACT = "api@12345.example.gov.cn, 021-12345"
    assert body(client.get(BASE + "discovery.json"))["contact"] == "api@12345.example.gov.cn, 021-12345"


def test_discovery_changeset_moves_when_a_service_or_its_definition_changes(client, services_world):
    """Clients cache the service list and definitions by the changeset: it moves
    with a category's edit (name, deactivation) and an attribute's deletion."""
    from chengyun.open311.models import ServiceAttribute
    from chengyun.taxonomy.models import Category

    def changeset():
        return body(client.get(BASE + "discovery.json"))["changeset"]

    Category.objects.update(updated_at="2025-06-01T00:00:00+00:00")
    ServiceAttribute.objects.update(updated_at="2025-06-01T00:00:00+00:00")
    first = changeset()
    assert first == "2025-06-01T08:00:00+08:00"
    leak = Category.objects.get(code="0101")
    leak.name_en = "Water leak (pipes)"
    leak.save()
    second = changeset()
    assert second > first
    Category.objects.update(updated_at="2025-06-01T00:00:00+00:00")
    assert changeset() == first
    ServiceAttribute.objects.filter(category=leak).first().delete()
    assert changeset() > first


def leak_hours(_world) -> str:
    """The deadline words of 0101 as the service list should say them."""
    from chengyun.taxonomy.models import Category, DeadlineKind

    leak = Category.objects.get(code="0101")
    hours = format(leak.deadline_hours.normalize(), "f")
    return f"{hours} 小时（含夜间和节假日）" if leak.deadline_kind == DeadlineKind.CALENDAR else f"{hours} 个工作小时"


def test_services_lists_active_leaf_categories_in_chinese_by_default(client, services_world):
    data = body(client.get(BASE + "services.json"))
    assert [s["service_code"] for s in data] == ["0101", "0102"], "the parent category 01 is a group, not a service"
    leak = data[0]
    assert leak["service_name"] == "水管漏水"
    assert leak["group"] == "供水设施"
    assert leak["keywords"] == "漏水, 爆管"
    assert leak["metadata"] is True
    assert leak["type"] == "realtime"
    assert leak["description"].endswith(f"办理时限：{leak_hours(services_world)}")
    assert data[1]["metadata"] is False, "street lights ask no extra questions"


@pytest.mark.parametrize("how", [{"QUERY_STRING": "locale=en"}, {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9,zh;q=0.5"}])
def test_services_in_english_on_request(client, services_world, how):
    data = body(client.get(BASE + "services.json", **how))
    assert data[0]["service_name"] == "Water leak"
    assert data[0]["group"] == "Water supply"
    assert data[0]["keywords"] == "leak, burst pipe"


def test_accept_language_preferring_chinese_gives_chinese(client, services_world):
    data = body(client.get(BASE + "services.json", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8"))
    assert data[0]["service_name"] == "水管漏水"


def test_services_xml(client, services_world):
    r = client.get(BASE + "services.xml", {"locale": "en"})
    assert r.status_code == 200
    root = body(r)
    assert root.tag == "services"
    services = root.findall("service")
    assert [s.findtext("service_code") for s in services] == ["0101", "0102"]
    assert services[0].findtext("service_name") == "Water leak"
    assert services[0].findtext("metadata") == "true"
    assert services[1].findtext("metadata") == "false"
    assert services[0].findtext("group") == "Water supply"
    for tag in ("description", "type", "keywords"):
        assert services[0].find(tag) is not None


def test_inactive_categories_are_not_services(client, services_world):
    lights = services_world.categories["0102"]
    lights.active = False
    lights.save()
    assert [s["service_code"] for s in body(client.get(BASE + "services.json"))] == ["0101"]


def test_service_definition_json_has_every_datatype_in_order(client, services_world):
    r = client.get(BASE + "services/0101.json", {"locale": "en"})
    assert r.status_code == 200
    data = body(r)
    assert data["service_code"] == "0101"
    attrs = data["attributes"]
    assert [a["code"] for a in attrs] == ["severity", "affected", "depth_cm", "since", "landmark", "details", "note"]
    assert [a["order"] for a in attrs] == [1, 2, 3, 4, 5, 6, 7]
    assert {a["datatype"] for a in attrs} == {"string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
    severity = attrs[0]
    assert severity == {
        "variable": True, "code": "severity", "datatype": "singlevaluelist", "required": True,
        "datatype_description": None, "order": 1, "description": "How bad is it?",
        "values": [{"key": "drip", "name": "Dripping"}, {"key": "flood", "name": "Flooding"}],
    }
    assert attrs[2]["datatype_description"] == "centimetres"
    assert "values" not in attrs[2]
    assert attrs[6]["variable"] is False


def test_service_definition_xml_in_chinese(client, services_world):
    r = client.get(BASE + "services/0101.xml")
    root = body(r)
    assert root.tag == "service_definition"
    assert root.findtext("service_code") == "0101"
    first = root.find("attributes/attribute")
    assert first.findtext("variable") == "true"
    assert first.findtext("code") == "severity"
    assert first.findtext("required") == "true"
    assert first.findtext("description") == "漏水程度"
    assert first.find("datatype_description").text is None
    values = first.findall("values/value")
    assert [(v.findtext("key"), v.findtext("name")) for v in values] == [("drip", "滴漏"), ("flood", "大量冒水")]


def test_service_without_questions_has_an_empty_definition(client, services_world):
    assert body(client.get(BASE + "services/0102.json")) == {"service_code": "0102", "attributes": []}
    root = body(client.get(BASE + "services/0102.xml"))
    assert root.find("attributes") is not None and len(root.find("attributes")) == 0


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_is_404_with_an_error_list(client, services_world, fmt):
    for code in ("9999", "01"):  # unknown; a group, not a service
        r = client.get(BASE + f"services/{code}.{fmt}")
        assert r.status_code == 404
        if fmt == "json":
            (error,) = body(r)
            assert error["code"] == 404 and "service_code" in error["description"]
        else:
            root = body(r)
            assert root.tag == "errors"
            assert root.findtext("error/code") == "404"
            assert "service_code" in root.findtext("error/description")


def test_jurisdiction_id(client, services_world, settings):
    settings.OPEN311_JURISDICTION = "testcity.gov.cn"
    assert client.get(BASE + "services.json").status_code == 200
    assert client.get(BASE + "services.json", {"jurisdiction_id": "testcity.gov.cn"}).status_code == 200
    r = client.get(BASE + "services.json", {"jurisdiction_id": "elsewhere.gov"})
    assert r.status_code == 404
    assert "jurisdiction_id" in body(r)[0]["description"]


def test_a_city_that_names_no_jurisdiction_ignores_the_parameter(client, services_world, settings):
    """GeoReport lets a server of one jurisdiction ignore jurisdiction_id: a client set up with any id works."""
    settings.OPEN311_JURISDICTION = ""
    assert client.get(BASE + "services.xml", {"jurisdiction_id": "sh.gov.cn"}).status_code == 200


@pytest.mark.parametrize(("path", "fmt"), [("services.csv", "json"), ("services.html", "json"),
                                           ("nothing/here.xml", "xml"), ("requests", "json")])
def test_anything_else_is_the_specs_404_error_list(client, services_world, path, fmt):
    r = client.get(BASE + path, {"locale": "en"})
    assert r.status_code == 404
    if fmt == "json":
        assert r["Content-Type"].startswith("application/json")
        (error,) = body(r)
        assert error["code"] == 404 and "not a GeoReport v2 resource" in error["description"]
    else:
        assert body(r).tag == "errors" and body(r).findtext("error/code") == "404"


def test_an_unknown_path_is_not_found_whatever_the_method(client, services_world):
    for method in (client.post, client.put, client.delete):
        r = method(BASE + "nothing/here.json")
        assert r.status_code == 404 and body(r)[0]["code"] == 404


def test_unknown_format_is_not_found(client, services_world):
    assert client.get(BASE + "services.csv").status_code == 404


def test_head_is_answered_where_get_is(client, services_world):
    """Uptime monitors and link checkers ask HEAD."""
    for path in ("discovery.json", "services.json", "services.xml", "requests.json"):
        r = client.head(BASE + path)
        assert r.status_code == 200, path
        assert r["Content-Type"] == client.get(BASE + path)["Content-Type"]
    assert client.post(BASE + "services.json")["Allow"] == "GET, HEAD"


def test_a_civic_app_in_a_browser_may_call_from_its_own_site(client, services_world):
    r = client.get(BASE + "services.json", HTTP_ORIGIN="https://civic.example.org")
    assert r["Access-Control-Allow-Origin"] == "*"
    pre = client.options(BASE + "requests.json", HTTP_ORIGIN="https://civic.example.org",
                         HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert pre.status_code == 204 and "POST" in pre["Access-Control-Allow-Methods"]
    assert "Content-Type" in pre["Access-Control-Allow-Headers"]
    assert client.options(BASE + "nothing/here.json").status_code == 404, "an unknown path stays unknown"


def test_wrong_method(client, services_world):
    r = client.post(BASE + "services.json")
    assert r.status_code == 405
    assert body(r)[0]["code"] == 405
