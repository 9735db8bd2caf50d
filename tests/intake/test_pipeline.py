from __future__ import annotations

import pytest

from chengyun.audit.services import verify_chain
from chengyun.cases.workflow import CaseStatus
from chengyun.intake.services import ReportInput, submit

from .. import factories as f


def test_confident_report_is_classified_located_and_routed(intake_world):
    lon, lat = f.centre("100101001")
    res = submit(ReportInput(channel="web", description="水管爆裂，路面一直冒水", lon=lon, lat=lat))
    report = res.report
    assert res.created
    assert report.number.startswith("R")
    assert report.category.code == "0101"
    assert report.confidence > 0.5
    assert report.classification["terms"], "the terms that drove the decision are stored"
    case = report.case
    assert case.status == CaseStatus.DISPATCHED
    assert case.lead.department == intake_world.dept("water", "100101")
    assert case.route_explanation["classification"]["decided_by"] == "classifier"
    assert case.timeline.get(action="accept").note == "Accepted automatically: the category is certain enough."
    assert list(verify_chain()) == []


def test_the_timeline_says_the_reporter_chose_the_category(intake_world):
    lon, lat = f.centre("100101001")
    case = submit(ReportInput(channel="web", description="自来水井盖松动 车开过去响", category="0101", lon=lon, lat=lat)).report.case
    assert case.status == CaseStatus.DISPATCHED
    assert case.timeline.get(action="accept").note == "Accepted automatically: the reporter chose the category.", \
        "not 'certain enough': the classifier may have been unsure"


@pytest.mark.parametrize(("channel", "note", "label"), [
    ("hotline", "Accepted automatically: the hotline operator chose the category.", "chosen by the hotline operator"),
    ("inspector", "Accepted automatically: the grid inspector chose the category.", "chosen by the grid inspector"),
])
def test_a_category_staff_chose_is_said_to_be_theirs_not_the_callers(intake_world, client, channel, note, label):
    """An operator picks the category of a call; the caller did not."""
    from chengyun.org.models import Role

    lon, lat = f.centre("100101001")
    case = submit(ReportInput(channel=channel, description="自来水井盖松动 车开过去响", category="0101", lon=lon,
                              lat=lat)).report.case
    assert case.timeline.get(action="accept").note == note
    dispatcher = f.make_user(username="disp-given", role=Role.DISPATCHER)
    client.force_login(dispatcher)
    page = client.get(f"/console/cases/{case.number}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert label in page and "chosen by the reporter" not in page


STREET = "区1 街道1001 "  # placed in street 100101001 by its names


def _call(text: str, address: str, category: str = "0101"):
    return submit(ReportInput(channel="hotline", description=text, address=address, category=category,
                              contact={"phone": "13800000000"})).report


def test_a_call_about_the_same_address_is_attached_without_a_point(intake_world):
    first = _call("和平路12号门口水管爆裂 水一直在冒", STREET + "和平路12号")
    second = _call("和平路12号门口水管爆裂，水一直冒", STREET + " 和平路12号 ")  # spaces differ
    assert first.lon is None and first.area.code == "100101001"
    assert second.duplicate == "attached" and second.case_id == first.case_id
    why = second.duplicate_explanation
    assert why["by"] == "place" and why["place"] == 1.0 and why["place_by"] == "address"
    assert why["best_case"] == first.case.number and why["score"] >= why["attach_at"]


def test_the_same_street_alone_makes_a_dispatcher_ask_never_attach(intake_world):
    first = _call("和平路12号门口水管爆裂 水一直在冒", STREET + "和平路12号")
    second = _call("和平路12号门口水管爆裂 水一直在冒", STREET + "幸福路3号")
    why = second.duplicate_explanation
    assert why["place"] == 0.0 and why["place_by"] == "area" and why["area"] == "100101001"
    assert second.duplicate == "ask" and second.case_id != first.case_id
    assert why["ask_at"] <= why["score"] < why["attach_at"]


def test_a_district_alone_is_too_wide_to_match_in(intake_world):
    _call("水管爆裂 水一直在冒", "区1 某小区")
    second = _call("水管爆裂 水一直在冒", "区1 另一个小区")
    assert second.area.code == "100101" and second.duplicate == "new"
    assert second.duplicate_explanation["area"] is None and second.duplicate_explanation["candidates"] == 0


def test_without_point_address_or_fine_area_nothing_is_checked(intake_world):
    report = submit(ReportInput(channel="hotline", description="水管爆裂", category="0101")).report
    assert report.duplicate == "new" and "not checked" in report.duplicate_explanation["reason"]


def test_another_problem_at_the_same_address_is_not_a_duplicate(intake_world):
    _call("和平路12号门口水管爆裂", STREET + "和平路12号")
    other = _call("路灯不亮 晚上很黑", STREET + "和平路12号", category="0102")  # a sibling category
    why = other.duplicate_explanation
    # A case of another category counts only with words alike: this one not at all.
    assert other.duplicate == "new" and why["candidates"] == 1 and "best_case" not in why


def test_the_same_address_written_with_other_spaces_is_the_same_address(intake_world):
    first = _call("某小区3号楼水管爆裂 水一直在冒", "区1  某小区\u30003号楼")  # placed in the district only
    second = _call("某小区3号楼水管爆裂 水一直在冒", "区1 某小区 3号楼")
    assert first.area.code == "100101"
    assert second.case_id == first.case_id and second.duplicate_explanation["place_by"] == "address"


def test_calls_without_a_point_in_one_street_raise_a_warning_by_area(intake_world):
    """The burst main: no-water calls from one street, each with its own address, none with a point."""
    from chengyun.intake.models import ClusterWarning

    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        _call(f"{house}水管爆裂 家里没水了", STREET + house)
    warning = ClusterWarning.objects.get()
    assert warning.by_area and warning.area.code == "100101001" and warning.report_count == 3
    case = warning.case
    assert case.channel == "discovery" and case.area.code == "100101001", "the case is placed in that street"
    assert "Street 1001" in case.title or "街道1001" in case.title
    _call("幸福路8号水管爆裂 家里没水了", STREET + "幸福路8号")  # joins
    _call("水管爆裂 家里没水了", "区1 街道1002 和平路1号")  # another street: not in it
    warning.refresh_from_db()
    assert ClusterWarning.objects.count() == 1 and warning.report_count == 4


def test_calls_placed_only_in_a_district_raise_no_warning(intake_world):
    from chengyun.intake.models import ClusterWarning

    for house in ("某小区1号", "某小区9号", "另一小区3号"):
        _call(f"{house}水管爆裂 家里没水了", "区1 " + house)
    assert not ClusterWarning.objects.exists(), "a district is too wide to say the calls are about one thing"


def test_pinned_reports_and_calls_of_one_street_count_together(intake_world):
    """No water in one street: two people report on the web with a pin, far
    apart (no radius cluster), one calls the hotline with an address: three
    in the street, a call among them, is a warning for the street."""
    from chengyun.intake.models import ClusterWarning

    lon, lat = f.centre("100101001")
    pinned = [submit(ReportInput(channel="web", description="水管爆裂 家里没水了", category="0101", lon=lon + dx,
                                 lat=lat)).report for dx in (-0.02, 0.02)]  # 4 km apart
    assert not ClusterWarning.objects.exists(), "pinned reports alone keep to the radius"
    call = _call("和平路1号水管爆裂 家里没水了", STREET + "和平路1号")
    warning = ClusterWarning.objects.get()
    assert warning.by_area and warning.area.code == "100101001"
    assert set(warning.reports.values_list("pk", flat=True)) == {pinned[0].pk, pinned[1].pk, call.pk}
    later = submit(ReportInput(channel="web", description="水管爆裂 家里没水了", category="0101", lon=lon,
                               lat=lat + 0.005)).report  # pinned, in the street: joins the street's warning
    warning.refresh_from_db()
    assert warning.report_count == 4 and later.cluster_warnings.get() == warning


def test_pinned_reports_alone_raise_no_warning_for_their_street(intake_world):
    from chengyun.intake.models import ClusterWarning

    lon, lat = f.centre("100101001")
    for dx in (-0.02, 0.0, 0.02):  # three in the street, 2 km apart each
        submit(ReportInput(channel="web", description="水管爆裂 家里没水了", category="0101", lon=lon + dx, lat=lat))
    assert not ClusterWarning.objects.exists()


def test_after_the_warnings_case_is_closed_a_new_burst_raises_a_new_case(intake_world):
    """The main was repaired and the case closed; within the hour it bursts
    again: the new calls raise a new warning and case, not a silent join to
    the closed one, and the first burst's calls do not count twice."""
    from chengyun.cases.models import Case
    from chengyun.intake.models import ClusterWarning

    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        _call(f"{house}水管爆裂 家里没水了", STREET + house)
    first = ClusterWarning.objects.get()
    Case.objects.filter(pk=first.case_id).update(status=CaseStatus.CLOSED)
    _call("和平路5号水管又爆了 家里没水了", STREET + "和平路5号")
    assert ClusterWarning.objects.count() == 1, "one new call, and the first three are in the closed warning"
    for house in ("和平路7号", "幸福路6号"):
        _call(f"{house}水管又爆了 家里没水了", STREET + house)
    second = ClusterWarning.objects.exclude(pk=first.pk).get()
    assert second.report_count == 3 and second.case_id not in (None, first.case_id)
    assert second.case.status != CaseStatus.CLOSED
    assert set(second.reports.values_list("address", flat=True)) == {STREET + h for h in ("和平路5号", "和平路7号",
                                                                                         "幸福路6号")}
    first.refresh_from_db()
    assert first.report_count == 3


def test_a_report_counts_toward_one_warning_only(intake_world):
    """Reports with a point: a spreading burst is one warning; a report just
    outside its radius does not raise a second one out of the first one's reports."""
    from chengyun.intake.models import ClusterWarning

    from .reports_api import shift

    lon, lat = f.centre("100101001")

    def report_at(east: float):
        x, y = shift(lon, lat, east_m=east)
        return submit(ReportInput(channel="web", description="水管爆裂 家里没水了", category="0101", lon=x, lat=y)).report

    for east in (0, 100, 200):
        report_at(east)
    warning = ClusterWarning.objects.get()
    assert warning.radius_m == 300
    report_at(300)  # 200 m from the warning's centre: joins it
    warning.refresh_from_db()
    assert warning.report_count == 4
    beyond = report_at(410)  # 310 m from the centre; within 300 m of the reports at 200 and 300 m
    assert ClusterWarning.objects.count() == 1, "the reports at 200 and 300 m are the first warning's"
    assert not beyond.cluster_warnings.exists()


def test_a_warning_whose_case_was_merged_into_an_open_case_goes_on(intake_world):
    """A dispatcher joins the automatic case to the case already open for the
    burst: later calls join the warning, no second warning is raised."""
    from chengyun.cases import services as case_services
    from chengyun.cases.models import Case
    from chengyun.intake.models import ClusterWarning

    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        _call(f"{house}水管爆裂 家里没水了", STREET + house)
    warning = ClusterWarning.objects.get()
    lon, lat = f.centre("100102001")
    existing = case_services.create_case(title="主管爆裂", description="主管爆裂", lon=lon, lat=lat, by="test")
    Case.objects.filter(pk=warning.case_id).update(status=CaseStatus.MERGED, merged_into=existing)
    for house in ("和平路5号", "和平路7号", "幸福路6号"):
        _call(f"{house}水管又爆了 家里没水了", STREET + house)
    assert ClusterWarning.objects.count() == 1
    warning.refresh_from_db()
    assert warning.report_count == 6


def test_a_late_arrival_does_not_move_a_warnings_last_report_back(intake_world):
    """A feed with its reports out of order: a report older than the warning's
    last one joins it; the last report stays where it was."""
    from datetime import timedelta

    from chengyun.intake import cluster
    from chengyun.intake.models import ClusterWarning

    for house in ("和平路1号", "和平路9号", "幸福路3号"):
        _call(f"{house}水管爆裂 家里没水了", STREET + house)
    warning = ClusterWarning.objects.get()
    late = _call("和平路5号水管爆裂 家里没水了", STREET + "和平路5号")
    warning.refresh_from_db()
    last = warning.last_report_at
    older = late.received_at - timedelta(minutes=10)
    type(late).objects.filter(pk=late.pk).update(received_at=older)
    c = late.category
    arrival = cluster.Arrival(late.pk, c.pk, None, None, older, late.area_id, c.cluster_reports, c.cluster_radius_m,
                              c.cluster_window_minutes, c)
    cluster.ClusterWarning.reports.through.objects.filter(report_id=late.pk).delete()
    assert cluster.check_many([arrival], open_case=lambda w: None) == [warning]
    warning.refresh_from_db()
    assert warning.last_report_at == last


def test_the_same_words_twice_while_the_classifier_is_unsure_make_one_case(intake_world, settings):
    """Nobody has classified the first case yet; the second report is still its duplicate."""
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # the classifier is never sure enough
    lon, lat = f.centre("100103001")
    first = submit(ReportInput(channel="web", description="这里有个奇怪的东西 一直响", lon=lon, lat=lat)).report
    assert first.case.category is None and first.case.status == CaseStatus.NEW
    again = submit(ReportInput(channel="web", description="这里有个奇怪的东西 一直响", lon=lon + 0.0001, lat=lat)).report
    assert again.case_id == first.case_id and again.duplicate == "attached"
    why = again.duplicate_explanation
    assert why["category_factor"] == 0.8 and why["candidates"] == 1, "an unclassified case weighs as a sibling"
    other = submit(ReportInput(channel="web", description="树枝断了挂在电线上", lon=lon, lat=lat)).report
    assert other.case_id != first.case_id, "other words at the same place are another problem"


def test_an_address_naming_the_road_a_street_is_named_after_is_placed_in_that_street(intake_world):
    """南京东路街道 is where 南京东路300号 is: a street's name without its ending places an
    address, when it agrees with the district named (or is the only such name)."""
    from chengyun.areas.locator import invalidate
    from chengyun.areas.models import Area
    from chengyun.intake.geo import area_from_address

    Area.objects.filter(code="100101001").update(name="和平东路街道")
    Area.objects.filter(code="100102001").update(name="和平东路镇")  # another district has one of that name too
    invalidate()
    assert area_from_address("区1和平东路300号").code == "100101001"
    assert area_from_address("区2 和平东路8号").code == "100102001"
    assert area_from_address("和平东路300号") is None, "two streets could be meant, and no district says which"
    assert area_from_address("测试市和平东路300号").code == "100000", "naming the city does not say which"
    Area.objects.filter(code="100102001").update(name="街道1002001")
    invalidate()
    assert area_from_address("测试市和平东路300号").code == "100101001", "the only street of that name"
    assert area_from_address("区3和平东路300号").code == "100103", "the district named wins over a street elsewhere"
    report = submit(ReportInput(channel="hotline", description="路灯不亮 晚上很黑", address="区1和平东路300号")).report
    assert report.area.code == "100101001"


def test_an_english_address_naming_a_subdistrict_without_its_ending_is_placed_there(intake_world):
    """"Xujiahui" is where Xujiahui Subdistrict is, as 南京东路 is in 南京东路街道."""
    from chengyun.areas.locator import invalidate
    from chengyun.areas.models import Area
    from chengyun.intake.geo import area_from_address

    Area.objects.filter(code="100101001").update(name_en="Xujiahui Subdistrict")
    Area.objects.filter(code="100102001").update(name_en="Hongqiao Town")
    invalidate()
    assert area_from_address("12 Tianyaoqiao Road, Xujiahui").code == "100101001"
    assert area_from_address("near the metro, xujiahui, Testcity").code == "100101001"
    assert area_from_address("Hongqiao Town hall").code == "100102001"
    assert area_from_address("Xujiahuibei Road") is None, "a whole word only"
    assert area_from_address("Xujiahui, 12 Hongqiao Road").code == "100101001", "Hongqiao: two syllables, a road"
    Area.objects.filter(code="100103001").update(name_en="Zhongshan Subdistrict")
    invalidate()
    assert area_from_address("1000 Zhongshan North Road") is None, "two syllables are in too many road names"
    assert area_from_address("District 2, Xujiahui").code == "100102", "the district named wins over a street elsewhere"


def test_an_english_address_naming_the_road_a_street_is_named_after_is_placed_there(intake_world):
    """南京东路街道 ("Nanjingdonglu Subdistrict") is where "300 Nanjing East Road" is, in
    the ways English writes it; the English names come from the Chinese name's parts."""
    from chengyun.areas.locator import invalidate
    from chengyun.areas.models import Area
    from chengyun.intake.geo import area_from_address

    for code, name, name_en in (("100101001", "南京东路街道", "Nanjingdonglu Subdistrict"),
                                ("100102001", "南京西路街道", "Nanjingxilu Subdistrict"),
                                ("100103001", "瑞金二路街道", "Ruijin'erlu Subdistrict")):
        Area.objects.filter(code=code).update(name=name, name_en=name_en)
    invalidate()
    for address in ("300 Nanjing East Road", "East Nanjing Rd., District 1", "Nanjing Rd. (E) 300", "E. Nanjing Rd.",
                    "nanjing road east", "Nanjing Dong Lu 300", "the mall at Nanjing East Rd's end"):
        assert area_from_address(address).code == "100101001", address
    assert area_from_address("88 Nanjing Rd W").code == "100102001"
    Area.objects.filter(code="100102001").update(name="湖南路街道", name_en="Hunanlu Subdistrict")
    invalidate()
    assert area_from_address("Hunan Road 8").code == "100102001", "湖南路: 南 is part of the name here"
    assert area_from_address("12 Ruijin 2nd Road").code == "100103001"
    assert area_from_address("Ruijin Road No. 2").code == "100103001"
    assert area_from_address("Nanjing Road 5") is None, "no direction: either street could be meant"
    assert area_from_address("Nanjing Eastern Road") is None, "whole words only"
    assert area_from_address("Nanjing East Road, District 2").code == "100102", "the district named wins"
    Area.objects.filter(code="100103001").update(name="南京路街道", name_en="Nanjinglu Subdistrict")
    invalidate()
    assert area_from_address("Nanjing Road 5").code == "100103001"
    assert area_from_address("300 Nanjing Road East").code == "100101001", "the longer name found is meant"
    assert area_from_address("Tower E, Nanjing Road 5").code == "100103001", "a tower's letter is no direction"
    assert area_from_address("300 E Nanjing Road").code == "100101001"
    report = submit(ReportInput(channel="hotline", description="Street light out at night",
                                address="No. 300 Nanjing East Rd.")).report
    assert report.area.code == "100101001"


def test_a_warning_raised_from_generated_reports_is_generated_too(intake_world):
    """The demo's smart-discovery cases carry the demo mark, as their reports do."""
    from chengyun.intake.models import ClusterWarning

    lon, lat = f.centre("100101001")
    for k, (x, y) in enumerate([(lon, lat), (lon, lat + 0.0018), (lon + 0.0021, lat + 0.0009)]):
        submit(ReportInput(channel="web", description="水管爆裂 路面冒水", lon=x, lat=y, generated=True,
                           idempotency_key=f"g-{k}", source="demo-generator"))
    assert ClusterWarning.objects.get().case.generated is True


@pytest.mark.parametrize(("said", "title"), [
    ("您好，我想反映一下，楼下停水了", "楼下停水了"),
    ("市民来电反映：小区门口井盖缺失", "小区门口井盖缺失"),
    ("Hello, good evening. The light in front of the market is out.", "The light in front of the market is out."),
    ("路灯坏了", "路灯坏了"),
    ("Caller says there has been no water since 3 pm", "There has been no water since 3 pm"),
    ("您好", "您好"),  # nothing but a greeting: kept
    # Long ones are cut at 60 characters, English between words.
    ("The streetlight next to the bus stop on Huaihai Road has been flickering all night",
     "The streetlight next to the bus stop on Huaihai Road has…"),
    ("小区门口那条路上的路灯已经坏了一个多星期了，晚上很黑，老人小孩走路都不安全，希望有关部门尽快派人来修理一下，谢谢，这个问题反映过好几次了",
     "小区门口那条路上的路灯已经坏了一个多星期了，晚上很黑，老人小孩走路都不安全，希望有关部门尽快派人来修理一下，谢谢，这个…"),
])
def test_a_title_made_from_a_call_leaves_out_its_greeting(said, title):
    from chengyun.intake.services import default_title

    assert default_title(said) == title
