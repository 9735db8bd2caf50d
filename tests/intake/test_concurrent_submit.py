"""A sensor platform retries one alarm from 50 workers at once, all with the
same idempotency key: exactly one report and one case come out.

Real concurrent requests, each thread with its own database connection, on
SQLite (a file test database: WAL, IMMEDIATE transactions, 30 s busy timeout)
and on PostgreSQL.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.test import Client

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases.models import Case
from chengyun.intake.models import Report
from chengyun.org.services import create_token

from .. import factories as f
from .reports_api import REPORTS

THREADS = 50


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_same_key_make_one_report_and_one_case(intake_world, sensor):
    _token, key = create_token(sensor, "sensor gateway")
    lon, lat = f.centre("100101001")
    alarm = {"channel": "sensor", "description": "水管压力骤降 疑似爆管 路面冒水", "lon": lon, "lat": lat,
             "external_id": "PT-0931/2024-05-01T08:00", "attributes": {"pressure_kpa": 41}}
    barrier = threading.Barrier(THREADS)
    results: list[tuple[int, dict | str]] = []
    lock = threading.Lock()

    def send():
        try:
            client = Client()
            barrier.wait(timeout=30)
            response = client.post(REPORTS, data=alarm, content_type="application/json",
                                   headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "PT-0931-0800"})
            outcome = (response.status_code, response.json() if response.status_code < 500 else response.content)
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            outcome = (0, repr(exc))
        finally:
            connections.close_all()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert len(results) == THREADS
    codes = sorted(code for code, _body in results)
    assert codes == [200] * (THREADS - 1) + [201], results
    numbers = {body["number"] for _code, body in results}
    cases = {body["case"] for _code, body in results}
    assert len(numbers) == 1 and len(cases) == 1
    assert Report.objects.count() == 1 and Case.objects.count() == 1
    report = Report.objects.get()
    assert report.number in numbers and report.case.number in cases
    assert report.idempotency_key == "PT-0931-0800" and report.source == f"user:{sensor.pk}"
    assert AuditRecord.objects.filter(action="report.create").count() == 1
    assert AuditRecord.objects.filter(action="case.create").count() == 1
    assert list(verify_chain()) == []
