"""The real PyPI Open311 clients against our app on a live server.

* ``civicbot`` (``civicbot.open311.Open311Client``) speaks JSON only (it parses
  every answer as JSON) and can file requests: list services, read a
  definition, post a request (validated against the live definition),
  read it back, search, and resolve a token.
* ``georeport`` (``georeport.GeoReport``) reads in JSON and XML but cannot
  file requests (it has no create call); it reads back what civicbot filed.
"""

from __future__ import annotations

import pytest
from civicbot.http import HttpError, HttpTransport, RateLimiter
from civicbot.open311 import Open311Client, ValidationError
from civicbot.registry import Endpoint
from georeport import GeoReport

from chengyun.intake.models import Report

from .. import factories as f


@pytest.fixture
def base(live_server, api_key):
    return live_server.url + "/open311/v2/"


@pytest.fixture
def civic(base):
    endpoint = Endpoint(id="chengyun", name="Chengyun test city", base_url=base, write=True)
    # No politeness delay between calls to our own test server.
    return Open311Client(endpoint, transport=HttpTransport(rate_limiter=RateLimiter(min_interval=0)))


def file_with_civicbot(civic, api_key) -> str:
    lon, lat = f.centre("100101001")
    prepared = civic.create_request(
        "0101", dry_run=False, confirm="SEND", api_key=api_key.raw, validate_remote=True, lat=lat, lng=lon,
        description="水管爆裂，路面一直冒水", attributes={"severity": "flood", "affected": ["road", "homes"]},
        email="li@example.org", first_name="四", last_name="李", phone="13812345678",
    )
    (created,) = prepared.response
    return created["service_request_id"]


def test_civicbot_lists_posts_and_fetches(civic, api_key):
    services = civic.list_services()
    assert [s["service_code"] for s in services] == ["0101", "0102"]
    definition = civic.get_service_definition("0101")
    assert definition["attributes"][0]["code"] == "severity"

    number = file_with_civicbot(civic, api_key)
    report = Report.objects.get(number=number)
    assert report.attributes["affected"] == ["road", "homes"]
    assert report.contact.email == "li@example.org"

    fetched = civic.get_request(number)
    assert fetched["service_request_id"] == number
    assert fetched["status"] == "open"
    assert fetched["service_code"] == "0101"
    assert "li@example.org" not in str(fetched)
    assert [r["service_request_id"] for r in civic.list_requests(service_code="0101", status="open")] == [number]
    assert civic.list_requests(service_request_ids=[number], page_size=10)[0]["service_request_id"] == number
    assert civic.get_token(number) == [{"service_request_id": number, "token": number}]


def test_civicbot_local_checks_use_our_definition(civic, api_key):
    lon, lat = f.centre("100101001")
    with pytest.raises(ValidationError, match="severity"):
        civic.create_request("0101", dry_run=False, confirm="SEND", api_key=api_key.raw, validate_remote=True,
                             lat=lat, lng=lon, description="leak", attributes={})
    assert not Report.objects.exists()


def test_civicbot_sees_our_errors(civic, api_key):
    lon, lat = f.centre("100101001")
    with pytest.raises(HttpError) as failed:
        civic.create_request("0101", dry_run=False, confirm="SEND", api_key="wrong", lat=lat, lng=lon,
                             description="leak", attributes={"severity": "flood"})
    assert failed.value.status == 403 and "api_key" in failed.value.body
    with pytest.raises(HttpError) as failed:
        civic.get_request("R0")
    assert failed.value.status == 404
    assert not Report.objects.exists()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_reads_services_and_requests(base, civic, api_key, fmt):
    number = file_with_civicbot(civic, api_key)
    client = GeoReport(base, output_format=fmt)

    services = client.get_service_list()
    assert [s["service_code"] for s in services] == ["0101", "0102"]
    assert services[0]["service_name"] == "水管漏水"
    definition = client.get_service_definition("0101")
    assert definition["service_code"] == "0101"
    attributes = definition["attributes"] if fmt == "json" else definition["attributes"]["attribute"]
    assert attributes[0]["code"] == "severity"

    request = client.get_service_request(number)
    assert request["service_request_id"] == number
    assert request["status"] == "open"
    assert "li@example.org" not in str(request) and "13812345678" not in str(request)

    found = client.get_service_requests(service_code="0101", status="open")
    rows = found if isinstance(found, list) else [found]  # xmltodict: one element is a dict, not a list
    assert [r["service_request_id"] for r in rows] == [number]
