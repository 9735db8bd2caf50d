"""Machine intake as it runs in production (``INTAKE_QUEUE = "worker"``): a
POST stores the request and answers at once; the worker's batch pipeline
then classifies, checks duplicates, opens or attaches to a case, routes it
and checks for clusters — with the same decisions and explanations as the
synchronous pipeline, one audit record per batch."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases import services as case_services
from chengyun.cases.models import Case, CaseStatus
from chengyun.intake import received
from chengyun.intake.models import ClusterWarning, DuplicateOutcome, Report
from chengyun.intake.services import ReportInput, submit
from chengyun.taxonomy.services import route

from .. import factories as f
from .conftest import BASE, body, leak_form


@pytest.fixture(autouse=True)
def queued(settings):
    settings.INTAKE_QUEUE = "worker"
    received._cached[0] = None  # each test builds its own pipeline (ids repeat between tests)
    yield
    received._cached[0] = None


def post(client, api_key, **extra):
    r = client.post(BASE + "requests.json", leak_form(api_key, **extra), HTTP_ACCEPT_LANGUAGE="en")
    assert r.status_code == 200, r.content
    return body(r)[0]


def test_a_post_is_stored_at_once_and_processed_by_the_worker(client, api_key, staff):
    row = post(client, api_key, phone="13812345678")
    report = Report.objects.get(number=row["service_request_id"])
    assert report.case is None and report.duplicate == DuplicateOutcome.PENDING
    assert "being classified" in row["service_notice"]
    assert report.contact.phone == "13812345678" and report.attributes == {"severity": "flood"}
    assert Case.objects.count() == 0

    shown = body(client.get(BASE + f"requests/{report.number}.json", {"locale": "en"}))[0]
    assert shown["status"] == "open" and shown["agency_responsible"] is None
    assert "being classified" in shown["service_notice"]
    listed = body(client.get(BASE + "requests.json", {"status": "open", "service_code": "0101"}))
    assert [r["service_request_id"] for r in listed] == [report.number]
    assert body(client.get(BASE + "requests.json", {"status": "closed"})) == []

    counts = received.process_received()
    assert (counts.rows, counts.cases, counts.routed) == (1, 1, 1)
    report.refresh_from_db()
    case = report.case
    assert case.status == CaseStatus.DISPATCHED and case.channel == "open311"
    assert case.created_at == report.received_at  # deadlines count from when the city was told
    assert report.duplicate == DuplicateOutcome.NEW and report.area.code == "100101001"
    # The explanation is the synchronous pipeline's: decided by the reporter, with the model's terms.
    assert report.classification["decided_by"] == "reporter"
    assert report.classification["terms"] and report.classification["alternatives"] is not None
    assert case.route_explanation["classification"]["decided_by"] == "reporter"
    timeline = list(case.timeline.order_by("at", "pk").values_list("action", "actor_name", "to_status"))
    assert timeline == [("create", "open311:Civic App", "new"), ("accept", "intake", "accepted"),
                        ("dispatch", "intake", "dispatched")]
    assert case.timeline.get(action="accept").note == "Accepted automatically: the reporter chose the category."
    assert case.assignments.filter(active=True, role="lead").count() == 1 and case.due_at is not None

    shown = body(client.get(BASE + f"requests/{report.number}.json", {"locale": "en"}))[0]
    assert shown["status"] == "open" and shown["agency_responsible"]
    assert shown["expected_datetime"] is not None

    audit = AuditRecord.objects.get(action=received.AUDIT_ACTION)
    assert audit.data["ranges"] == [[report.pk, report.pk]] and audit.data["reports"] == 1
    assert received.verify_processed(audit)
    assert list(verify_chain()) == []


def test_a_worker_that_lags_dates_its_dispatch_when_it_made_it(client, api_key, staff):
    """After a backlog the dispatch is dated when the worker made it, not at
    receipt: a partner reading the updates since its last look finds it among
    the new ones (FixMyStreet looks two hours back). Deadlines still count
    from receipt."""
    from datetime import UTC, datetime, timedelta

    from chengyun.clock import simulated
    from chengyun.open311.formats import w3c

    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in the city
    with simulated(t0):
        row = post(client, api_key)
    with simulated(t0 + timedelta(hours=3)):
        assert received.process_received().routed == 1
    case = Report.objects.get(number=row["service_request_id"]).case
    assert case.created_at == t0
    assert case.dispatched_at == t0 + timedelta(hours=3)
    assert case.timeline.get(action="dispatch").at == t0 + timedelta(hours=3)
    assert case.assignments.get(role="lead").dispatched_at == t0 + timedelta(hours=3)
    assert case.response_due_at < t0 + timedelta(hours=3), "deadlines count from receipt"
    look = {"start_date": w3c(t0 + timedelta(hours=1)), "end_date": w3c(t0 + timedelta(hours=4)), "locale": "en"}
    updates = body(client.get(BASE + "servicerequestupdates.json", look))
    assert [(u["service_request_id"], u["status"]) for u in updates] == [
        (row["service_request_id"], "open"), (row["service_request_id"], "action_scheduled")]


def test_a_batch_finds_its_own_duplicates_and_cases_opened_elsewhere(client, api_key, intake_world):
    first = post(client, api_key)
    again = post(client, api_key, description="水管爆裂，路面一直冒水，很严重")
    counts = received.process_received()
    assert (counts.rows, counts.cases, counts.attached) == (2, 1, 1)
    a, b = (Report.objects.get(number=x["service_request_id"]) for x in (first, again))
    assert b.case_id == a.case_id and b.duplicate == DuplicateOutcome.ATTACHED
    assert b.duplicate_explanation["best_case"] == a.case.number
    assert a.case.timeline.filter(action="report_attached").count() == 1

    # A case the portal opens after the pipeline has loaded its open cases is seen by the next batch.
    lon, lat = f.centre("100102001")
    portal = submit(ReportInput(channel="web", description="路灯不亮 晚上很黑", lon=lon, lat=lat)).report
    later = post(client, api_key, service_code="0102", description="路灯不亮 晚上很黑", at="100102001",
                 **{"attribute[severity]": None})
    received.process_received()
    assert Report.objects.get(number=later["service_request_id"]).case_id == portal.case_id

    # A case closed since it was loaded takes no more reports (what the pipeline reads: the
    # timeline entry every status change writes).
    Case.objects.filter(pk=a.case_id).update(status=CaseStatus.CLOSED)
    case_services._timeline(a.case, "close", "test", at=a.received_at, from_status="dispatched", to_status="closed")
    third = post(client, api_key)
    received.process_received()
    assert Report.objects.get(number=third["service_request_id"]).case_id != a.case_id


def test_a_case_staff_reclassify_moves_in_the_workers_open_cases(client, api_key, intake_world, staff, settings):
    """An unclassified case is a candidate for every report; once a dispatcher
    gives it a category, the worker's index (loaded before) files it there."""
    other = f.make_category(code="03", name="噪音", deadline_hours=24)
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # the portal's report stays unclassified
    lon, lat = f.centre("100101001")
    text = "水管爆裂，路面一直冒水"
    unsure = submit(ReportInput(channel="web", description=text, lon=lon, lat=lat)).report
    assert unsure.case.category is None
    settings.INTAKE_CONFIDENCE_THRESHOLD = 0.0
    post(client, api_key, service_code="0102", description="路灯不亮 晚上很黑", at="100102001",
         **{"attribute[severity]": None})
    received.process_received()  # the worker has loaded its open cases, the unclassified one among them

    case_services.reclassify_case(unsure.case, by=staff["dispatcher"], category=other)
    leak = post(client, api_key, description=text)
    same = post(client, api_key, service_code="03", description=text, **{"attribute[severity]": None})
    received.process_received()
    leak, same = (Report.objects.get(number=x["service_request_id"]) for x in (leak, same))
    assert leak.case_id != unsure.case_id, "a water leak is no longer matched with a case filed as noise"
    assert same.case_id == unsure.case_id and same.duplicate == DuplicateOutcome.ATTACHED


def test_a_case_staff_accept_with_a_category_moves_in_the_workers_open_cases(client, api_key, intake_world, staff,
                                                                             settings):
    """The usual way an unclassified case gets its category: accepted with one."""
    other = f.make_category(code="03", name="噪音", deadline_hours=24)
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01
    lon, lat = f.centre("100101001")
    text = "水管爆裂，路面一直冒水"
    unsure = submit(ReportInput(channel="web", description=text, lon=lon, lat=lat)).report
    settings.INTAKE_CONFIDENCE_THRESHOLD = 0.0
    post(client, api_key, service_code="0102", description="路灯不亮 晚上很黑", at="100102001",
         **{"attribute[severity]": None})
    received.process_received()  # loaded, the unclassified case among them

    case_services.accept_case(unsure.case, by=staff["operator"], category=other)
    leak = post(client, api_key, description=text)
    received.process_received()
    assert Report.objects.get(number=leak["service_request_id"]).case_id != unsure.case_id


def test_reports_are_processed_once_however_often_the_pipeline_runs(client, api_key):
    numbers = [post(client, api_key)["service_request_id"] for _ in range(3)]
    assert received.waiting() == 3
    assert received.process_received(limit=2).rows == 2
    assert received.process_received().rows == 1
    assert received.process_received().rows == 0
    assert received.waiting() == 0
    assert Report.objects.filter(number__in=numbers, case__isnull=False).count() == 3
    # A batch read before another worker processed it writes nothing.
    pipeline = received.ReceivedPipeline()
    extra = post(client, api_key)
    rows = pipeline.pending()
    assert [r.number for r in rows] == [extra["service_request_id"]]
    received.process_received()
    result = pipeline.import_prepared(pipeline.prepare(rows))
    assert result.counts.already == 1 and result.counts.reports == 0
    assert Case.objects.filter(reports__number=extra["service_request_id"]).count() == 1


def test_tampering_with_a_processed_report_shows_in_the_batch_digest(client, api_key):
    post(client, api_key)
    post(client, api_key, at="100102001")
    received.process_received()
    audit = AuditRecord.objects.get(action=received.AUDIT_ACTION)
    assert received.verify_processed(audit)
    Report.objects.filter(pk=audit.data["ranges"][0][0]).update(title="changed afterwards")
    assert not received.verify_processed(audit)


def test_received_reports_raise_cluster_warnings(client, api_key):
    for text in ("水管爆裂", "这里水管漏水", "自来水管破了", "水管漏水好久了"):
        post(client, api_key, description=text)
    received.process_received()  # the fourth joins the warning the third raised, in the same batch
    warning = ClusterWarning.objects.get()
    assert warning.report_count == 4 and warning.case is not None and warning.reports.count() == 4
    post(client, api_key, description="又一处水管爆裂")
    received.process_received()  # a later batch finds it ongoing
    warning.refresh_from_db()
    assert ClusterWarning.objects.count() == 1 and warning.report_count == 5


def test_the_workers_cluster_case_is_routed_as_route_decides_and_sees_rule_changes_on_refresh(client, api_key):
    for text in ("水管爆裂", "这里水管漏水", "自来水管破了"):
        post(client, api_key, description=text)
    received.process_received()
    case = ClusterWarning.objects.get().case
    decision = route(case.category, case.area)  # from the database, no snapshot
    assert decision.lead is not None and case.status == CaseStatus.DISPATCHED
    assert {k: v for k, v in case.route_explanation.items() if k != "classification"} == {
        **decision.explanation, "overridden": False}
    assert set(case.assignments.values_list("department_id", flat=True)) == {
        decision.lead.pk, *(d.pk for d in decision.assisting)}

    # The worker keeps its routing tables until it rebuilds its pipeline: a
    # department switched off meanwhile is seen after the rebuild.
    decision.lead.active = False
    decision.lead.save()
    received._cached[0] = None  # what INTAKE_PIPELINE_REFRESH_SECONDS does
    for text in ("水管爆裂", "这里水管漏水", "自来水管破了"):
        post(client, api_key, description=text, at="100101002")
    received.process_received()
    later = ClusterWarning.objects.order_by("-pk").first().case
    assert later.pk != case.pk
    assert later.route_explanation.get("lead") != decision.lead.code


def test_a_burst_split_between_batches_raises_its_warning_from_reports_of_both(client, api_key):
    numbers = [post(client, api_key, description=text)["service_request_id"]
               for text in ("水管爆裂", "这里水管漏水", "自来水管破了", "水管漏水好久了")]
    assert received.process_received(limit=2).rows == 2
    assert not ClusterWarning.objects.exists()  # two of three
    assert received.process_received(limit=2).rows == 2  # the third raises it, the fourth joins
    warning = ClusterWarning.objects.get()
    assert warning.report_count == 4 and set(warning.reports.values_list("number", flat=True)) == set(numbers)
    first_three = Report.objects.filter(number__in=numbers[:3])
    assert warning.started_at == min(r.received_at for r in first_three)
    assert warning.area is not None and warning.case is not None


def test_the_command_processes_what_is_waiting(client, api_key, capsys):
    post(client, api_key)
    call_command("process_intake", "--once")
    out = capsys.readouterr().out
    assert "processed 1 received reports" in out and "0 waiting" in out
    assert Report.objects.get().case is not None


def test_the_same_key_twice_while_waiting_is_one_report(client, api_key):
    one = client.post(BASE + "requests.json", leak_form(api_key), HTTP_IDEMPOTENCY_KEY="alarm-7")
    two = client.post(BASE + "requests.json", leak_form(api_key), HTTP_IDEMPOTENCY_KEY="alarm-7")
    assert body(one)[0]["service_request_id"] == body(two)[0]["service_request_id"]
    assert Report.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_loop_processes_what_arrives(client, api_key):
    import threading
    import time

    stop = threading.Event()
    loop = threading.Thread(target=received.run_forever, args=(stop,), daemon=True)
    loop.start()
    try:
        number = post(client, api_key)["service_request_id"]
        deadline = time.monotonic() + 30
        while Report.objects.get(number=number).case_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert Report.objects.get(number=number).case.status == CaseStatus.DISPATCHED


def test_a_batch_stores_the_classifiers_category_and_keeps_the_reporters(client, api_key):
    """One batch with a report that names its category (kept as received) and
    one that does not (the classifier's category written): both UPDATE forms."""
    from chengyun.intake.services import receive

    named = Report.objects.get(number=post(client, api_key)["service_request_id"])
    lon, lat = f.centre("100101001")
    unnamed = receive(ReportInput(channel="open311", description="路灯不亮 晚上很黑 路灯坏了好几天", lon=lon, lat=lat,
                                  source=api_key.source), by=api_key.actor).report
    assert unnamed.category_id is None
    counts = received.process_received()
    assert counts.rows == 2
    named.refresh_from_db()
    unnamed.refresh_from_db()
    assert named.category.code == "0101" and named.classification["decided_by"] == "reporter"
    assert unnamed.category is not None and unnamed.category.code == "0102"
    assert unnamed.classification["decided_by"] == "classifier" and unnamed.suggested_category_id == unnamed.category_id
    assert unnamed.case.category_id == unnamed.category_id and named.case.category_id == named.category_id
    assert Report.objects.filter(category__code="0102").count() == 1  # found through the (category, time) index
    assert received.verify_processed(AuditRecord.objects.get(action=received.AUDIT_ACTION))


@pytest.mark.django_db(transaction=True)
def test_receive_outside_a_transaction_stores_report_and_contact_once(api_key):
    """``receive()`` as the server calls it, with no transaction around it
    (on PostgreSQL: the ids, then the contact and the report in one statement).
    With and without a contact; the same key from ten threads at once is one
    report; the pipeline then takes both."""
    import threading

    from django.db import connection, connections

    from chengyun.intake.models import ReporterContact
    from chengyun.intake.services import receive
    from chengyun.taxonomy.models import Category

    assert connection.get_autocommit()
    lon, lat = f.centre("100101001")

    leaks = Category.objects.get(code="0101")  # as the Open311 view passes it

    def report(**extra):
        return ReportInput(channel="open311", category=leaks, description="水管爆裂，路面一直冒水", lon=lon, lat=lat,
                           source=api_key.source, **extra)

    from django.test.utils import CaptureQueriesContext

    from chengyun.areas.locator import in_city

    assert in_city(lon, lat)  # the city's outline, read once a process (the Open311 view has read it)
    with CaptureQueriesContext(connection) as queries:
        with_contact = receive(report(contact={"phone": "13812345678", "name": "李四"}), by=api_key.actor)
    if connection.vendor == "postgresql":  # the ids, then contact and report in one statement
        assert [q["sql"].split(None, 1)[0] for q in queries.captured_queries] == ["SELECT", "WITH"]
    without = receive(report(), by=api_key.actor)
    assert with_contact.created and without.created
    stored = Report.objects.get(pk=with_contact.report.pk)
    assert stored.number == with_contact.report.number and stored.contact.phone == "13812345678"
    assert stored.contact.name == "李四" and stored.duplicate == DuplicateOutcome.PENDING
    assert Report.objects.get(pk=without.report.pk).contact_id is None
    assert ReporterContact.objects.count() == 1

    outcomes, lock, barrier = [], threading.Lock(), threading.Barrier(10)

    def send():
        try:
            barrier.wait(timeout=30)
            result = receive(report(idempotency_key="alarm-9", contact={"phone": "13900001111"}), by=api_key.actor)
            with lock:
                outcomes.append((result.created, result.report.number))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(created for created, _n in outcomes) == [False] * 9 + [True]
    assert len({n for _c, n in outcomes}) == 1
    assert Report.objects.filter(idempotency_key="alarm-9").count() == 1
    assert ReporterContact.objects.count() == 2  # no contact left behind by the nine refused inserts
    assert received.process_received().rows == 3


def test_requests_with_only_an_address_are_matched_by_place_as_submit_matches_them(client, api_key, intake_world):
    """address_string alone: the worker finds the same address (attach) and the same street (ask), in its
    own batch and against a case another channel opened, and explains it as submit() does."""
    street = "区1 街道1001 "  # placed in street 100101001 by its names
    text = "和平路12号门口水管爆裂 水一直在冒"
    hotline = submit(ReportInput(channel="hotline", description=text, category="0101",
                                 address=street + "和平路12号")).report  # a case opened elsewhere, no point
    same = post(client, api_key, lat=None, long=None, address_string=street + "和平路 12号", description=text)
    nearby = post(client, api_key, lat=None, long=None, address_string=street + "幸福路3号", description=text)
    wide = post(client, api_key, lat=None, long=None, address_string="区1 某小区", description=text)
    received.process_received()
    same, nearby, wide = (Report.objects.get(number=x["service_request_id"]) for x in (same, nearby, wide))
    assert same.duplicate == DuplicateOutcome.ATTACHED and same.case_id == hotline.case_id
    assert nearby.duplicate == DuplicateOutcome.ASK and nearby.case_id != hotline.case_id
    assert wide.duplicate == DuplicateOutcome.NEW and wide.duplicate_explanation["area"] is None

    why = nearby.duplicate_explanation
    assert (why["area"], why["place"], why["place_by"], why["best_case"]) == ("100101001", 0.0, "area",
                                                                              hotline.case.number)

    # submit() decides the same with the same words and explains it with the same parts.
    again = submit(ReportInput(channel="hotline", description=text, category="0101", address=same.address)).report
    w, s = same.duplicate_explanation, again.duplicate_explanation
    assert again.duplicate == same.duplicate and again.case_id == same.case_id
    moving = ("score", "text", "time", "candidates")  # a moment later, with the worker's cases in the street too
    assert {k: w[k] for k in s if k not in moving} == {k: s[k] for k in s if k not in moving}
    assert w["score"] == pytest.approx(s["score"], abs=0.02)  # text: the same features, time: moments apart


def test_requests_with_only_an_address_in_one_street_raise_a_warning_by_area(client, api_key):
    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        post(client, api_key, lat=None, long=None, address_string="区1 街道1001 " + house,
             description=f"{house}水管爆裂 家里没水了")
    received.process_received()
    warning = ClusterWarning.objects.get()
    assert warning.by_area and warning.area.code == "100101001" and warning.report_count == 3
    assert warning.case.area.code == "100101001"


def test_requests_placed_only_in_a_district_raise_no_warning(client, api_key):
    for house in ("某小区1号", "某小区9号", "另一小区3号"):
        post(client, api_key, lat=None, long=None, address_string="区1 " + house, description=f"{house}水管爆裂 家里没水了")
    received.process_received()
    assert not ClusterWarning.objects.exists()


def test_a_case_staff_move_is_found_at_its_new_place_by_the_worker(client, api_key, intake_world, staff):
    """Moved by a dispatcher (relocate) after the worker loaded its open cases: the
    worker's index finds it where it is now, as submit() does."""
    text = "水管爆裂，路面一直冒水"
    old_lon, old_lat = f.centre("100101001")
    case = case_services.create_case(title=text, category=intake_world.categories["0101"], lon=old_lon,
                                     lat=old_lat, by=staff["dispatcher"])
    post(client, api_key, service_code="0102", description="路灯不亮 晚上很黑", at="100102001",
         **{"attribute[severity]": None})
    received.process_received()  # loaded, the case among them, at its first place

    new_lon, new_lat = f.centre("100103001")
    case_services.relocate_case(case, by=staff["dispatcher"], lon=new_lon, lat=new_lat)
    there = post(client, api_key, description=text, at="100103001")
    here = post(client, api_key, description=text)  # where the case was
    received.process_received()
    there, here = (Report.objects.get(number=x["service_request_id"]) for x in (there, here))
    assert there.case_id == case.pk, there.duplicate_explanation
    assert here.case_id != case.pk, "not at its old place any more"
