"""``chengyun import-reports``: CSV and JSON Lines through the bulk intake
pipeline, refused rows, idempotent reruns, resuming after a crash."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chengyun.audit.models import AuditRecord
from chengyun.audit.services import verify_chain
from chengyun.cases.models import AssignmentRole, Case, TimelineEntry
from chengyun.cases.services import compute_deadlines
from chengyun.cases.workflow import CaseStatus
from chengyun.intake import bulk
from chengyun.intake.models import DuplicateOutcome, DuplicateSuggestion, Report

from .. import factories as f

CN_HEADER = ["工单编号", "诉求内容", "分类", "经度", "纬度", "地址", "来电号码", "联系人", "受理时间"]


def write_csv(path, header, rows, *, bom=True):
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_jsonl(path, objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    return path


def run(path, *args):
    out, err = StringIO(), StringIO()
    call_command("import_reports", str(path), *args, stdout=out, stderr=err)
    return out.getvalue()


def read_refused(path):
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_with_chinese_headers(intake_world, tmp_path):
    lon, lat = f.centre("100101001")
    far_lon, far_lat = f.centre("100104002")
    path = write_csv(tmp_path / "hotline.csv", CN_HEADER, [
        ["H1", "小区门口水管爆裂，路面一直冒水", "0101", lon, lat, "测试市区1", "13800001111", "王先生", "2026-11-20 10:00"],
        ["H2", "这一排路灯全灭了，晚上很黑", "路灯", far_lon, far_lat, "", "", "", "2026/11/20 11:30"],
        ["H3", "自来水管道破裂 地面积水", "", far_lon - 0.3, far_lat, "", "", "", "2026年11月20日 12:00"],
        ["H4", "", "0101", lon, lat, "", "", "", "2026-11-20 10:00"],
        ["H5", "井盖不见了", "9999", lon, lat, "", "", "", "2026-11-20 10:00"],
        ["H6", "路灯不亮", "", "200", lat, "", "", "", "2026-11-20 10:00"],
        ["H7", "路灯不亮", "", lon, lat, "", "", "", "昨天下午"],
        ["H8", "长" * 4001, "", lon, lat, "", "", "", "2026-11-20 10:00"],
    ])
    out = run(path)

    assert "Rows read: 8" in out
    assert "Taken as new cases: 3" in out
    assert "Refused: 5" in out
    refused = read_refused(tmp_path / "hotline.csv.refused.csv")
    assert [(r["row"], r["field"]) for r in refused] == [
        ("4", "诉求内容"), ("5", "分类"), ("6", "经度"), ("7", "受理时间"), ("8", "诉求内容")]  # the file's own names
    assert "9999" in refused[1]["reason"] and refused[1]["工单编号"] == "H5"
    assert "too long" in refused[4]["reason"]

    h1 = Report.objects.select_related("case", "contact", "category", "area").get(external_id="H1")
    assert h1.number.startswith("R20261120")
    assert h1.received_at == datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # city time (Asia/Shanghai) without a zone
    assert h1.channel == "hotline" and h1.source == "import:hotline.csv"
    assert h1.category.code == "0101" and h1.category_given
    assert h1.area.code == "100101001"
    assert h1.contact.phone == "13800001111" and h1.contact.name == "王先生"
    case = h1.case
    assert case.number.startswith("20261120") and case.created_at == h1.received_at
    assert case.status == CaseStatus.DISPATCHED
    assert case.lead.department == intake_world.dept("water", "100101")
    assisting = [a.department for a in case.assignments.filter(role=AssignmentRole.ASSISTING)]
    assert assisting == [intake_world.dept("roads", "100101")]
    assert (case.response_due_at, case.due_at) == compute_deadlines(case.category, case.priority, h1.received_at)
    assert case.route_explanation["lead"] == "WATER-100101"
    assert case.route_explanation["located_in"] == "100101001"
    entries = list(case.timeline.values_list("action", "to_status"))
    assert entries == [("create", CaseStatus.DISPATCHED)]

    h2 = Report.objects.get(external_id="H2")
    assert h2.category.code == "0102"  # given by its Chinese name
    assert h2.case.lead.department == intake_world.dept("water", "100104")
    h3 = Report.objects.get(external_id="H3")
    assert h3.category.code == "0101" and not h3.category_given  # decided by the classifier
    assert h3.classification["decided_by"] == "classifier" and h3.confidence >= 0.5
    assert h3.received_at == datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    assert list(verify_chain()) == []


def test_jsonl_with_map_and_duplicates_in_the_file_attach_to_one_case(intake_world, tmp_path):
    lon, lat = f.centre("100102001")
    path = write_jsonl(tmp_path / "feed.jsonl", [
        {"id": "J1", "text": "路边水管破了一直在喷水", "x": lon, "y": lat, "when": "2026-11-20T09:00:00+08:00"},
        {"id": "J2", "text": "路边水管破了一直在喷水", "x": lon + 0.0003, "y": lat, "when": "2026-11-20T09:20:00+08:00",
         "tel": "13900002222"},
        {"id": "J3", "text": "路边水管破了 一直在喷水！", "x": lon, "y": lat + 0.0002, "when": "2026-11-20T09:40:00+08:00"},
        {"id": "J4", "text": "路边水管破了一直在喷水", "x": lon + 0.5, "y": lat, "when": "2026-11-20T09:45:00+08:00"},
        ["not", "an", "object"],
    ])
    out = run(path, "--map", "description=text", "--map", "lon=x", "--map", "lat=y", "--map", "received_at=when",
              "--map", "external_id=id", "--map", "phone=tel", "--channel", "department")

    assert "Taken as new cases: 2" in out
    assert "Attached to an open case as duplicates: 2" in out
    assert "Refused: 1" in out
    first = Report.objects.get(external_id="J1")
    for ext in ("J2", "J3"):
        report = Report.objects.get(external_id=ext)
        assert report.case_id == first.case_id
        assert report.duplicate == DuplicateOutcome.ATTACHED
        assert report.duplicate_explanation["best_case"] == first.case.number
        assert report.duplicate_explanation["score"] >= 0.72
        assert report.channel == "department"
    assert Report.objects.get(external_id="J2").contact.phone == "13900002222"
    assert Report.objects.get(external_id="J4").case_id != first.case_id  # 48 km away: its own case
    attached = TimelineEntry.objects.filter(case=first.case, action="report_attached")
    assert sorted(e.data["report"] for e in attached) == sorted(
        Report.objects.filter(external_id__in=["J2", "J3"]).values_list("number", flat=True))
    refused = read_refused(tmp_path / "feed.jsonl.refused.csv")
    assert refused[0]["row"] == "5" and refused[0]["field"] == "record"


def test_what_a_12345_export_brings_is_taken_or_refused_with_its_own_names(intake_world, tmp_path):
    """Channel words of other systems, a repeated id, a short row, an old date, a point outside the city."""
    lon, lat = f.centre("100101001")
    header = ["工单编号", "诉求内容", "经度", "纬度", "地址", "受理时间", "来源渠道"]
    path = write_csv(tmp_path / "export.csv", header, [
        ["C1", "水管爆裂 路面冒水", lon, lat, "", "2026-11-20 10:00", "12345热线"],
        ["C2", "路灯不亮 晚上很黑", lon + 0.02, lat, "", "2026-11-20 10:05", "微信"],
        ["C3", "路灯不亮 很黑", lon + 0.04, lat, "", "2026-11-20 10:10", "Hotline"],
        ["C1", "水管爆裂 路面冒水 又打来", lon, lat, "", "2026-11-19 10:00", "12345热线"],
        ["C4", "路灯不亮"],
        ["C5", "路灯不亮 很黑", lon + 0.06, lat, "", "1066-10-14 10:00", "热线"],
        ["C6", "路灯不亮 很黑", f.OUTSIDE[0], f.OUTSIDE[1], "", "2026-11-20 10:15", "热线"],
        ["C7", "路灯不亮 很黑", f.OUTSIDE[0], f.OUTSIDE[1], "区1 街道1001 和平路3号", "2026-11-20 10:20", "热线"],
        ["C8", "路灯不亮 很黑", lon + 0.08, lat, "", "2026-11-20 10:25", "信鸽"],
    ])
    out = run(path)
    assert "Rows read: 9" in out and "Refused: 5" in out
    refused = {r["工单编号"]: r for r in read_refused(tmp_path / "export.csv.refused.csv")}
    assert set(refused) == {"C1", "C4", "C5", "C6", "C8"}
    assert refused["C1"]["field"] == "工单编号" and refused["C1"]["row"] == "4" and "Row 1 " in refused["C1"]["reason"]
    assert refused["C4"]["field"] == "record" and "2 values" in refused["C4"]["reason"]
    assert refused["C5"]["field"] == "受理时间" and "1900" in refused["C5"]["reason"]
    assert refused["C6"]["field"] == "纬度" and "outside" in refused["C6"]["reason"]
    assert refused["C8"]["field"] == "来源渠道" and "信鸽" in refused["C8"]["reason"]
    got = dict(Report.objects.values_list("external_id", "channel"))
    assert got == {"C1": "hotline", "C2": "web", "C3": "hotline", "C7": "hotline"}
    assert Report.objects.get(external_id="C1").description == "水管爆裂 路面冒水", "the first row of the id is kept"
    c7 = Report.objects.get(external_id="C7")
    assert c7.lon is None and c7.area.code == "100101001", "the address places it; the stray point is dropped"


def test_a_bad_byte_refuses_its_row_and_the_rest_is_imported(intake_world, tmp_path):
    lon, lat = f.centre("100101001")
    good = lambda i: f"B{i},路灯不亮 第{i}处,{lon + i * 0.01},{lat},2026-11-20 10:00\n".encode()  # noqa: E731
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"external_id,description,lon,lat,received_at\n" + good(1) + good(2)
                     + "B3,路灯不亮".encode("gbk") + f",{lon},{lat},2026-11-20 10:00\n".encode() + good(4))
    out = run(path)
    assert "Rows read: 4" in out and "Refused: 1" in out
    (row,) = read_refused(tmp_path / "mixed.csv.refused.csv")
    assert row["row"] == "3" and "Line 4 is not UTF-8" in row["reason"]
    assert sorted(Report.objects.values_list("external_id", flat=True)) == ["B1", "B2", "B4"]
    # A file in another encoding from its first row: stop and say how to read it.
    path.write_bytes(b"external_id,description\n" + "G1,路灯不亮".encode("gbk") + b"\n")
    with pytest.raises(CommandError, match="not UTF-8 .line 2"):
        run(path, "--restart")


def test_jsonl_map_naming_a_key_no_record_has(intake_world, tmp_path):
    lon, lat = f.centre("100101001")
    path = write_jsonl(tmp_path / "feed.jsonl", [
        {"id": "N1", "text": "路灯不亮", "x": lon, "y": lat},
        {"id": "N2", "text": {"nested": "x"}, "x": lon, "y": lat},
    ])
    with pytest.raises(CommandError, match="No key “words” in the first record"):
        run(path, "--map", "description=words")
    err = StringIO()
    call_command("import_reports", str(path), "--map", "description=text", "--map", "lon=x", "--map", "lat=y",
                 "--map", "external_id=id", "--map", "phone=tel", stdout=StringIO(), stderr=err)
    assert "No record had the key “tel”" in err.getvalue()
    (row,) = read_refused(tmp_path / "feed.jsonl.refused.csv")
    assert row["row"] == "2" and row["field"] == "text" and "JSON object or list" in row["reason"]


def test_grey_zone_asks_a_dispatcher(intake_world, tmp_path):
    lon, lat = f.centre("100103002")
    path = write_csv(tmp_path / "grey.csv", ["external_id", "description", "category", "lon", "lat", "received_at"], [
        ["G1", "水管爆裂 路面冒水", "0101", lon, lat, "2026-11-20 09:00"],
        ["G2", "这一排路灯全灭了 晚上很黑", "0101", lon, lat, "2026-11-20 09:01"],
    ], bom=False)
    run(path)
    g1, g2 = Report.objects.get(external_id="G1"), Report.objects.get(external_id="G2")
    assert g2.duplicate == DuplicateOutcome.ASK
    assert g2.case_id != g1.case_id and g2.case.status == CaseStatus.NEW  # not routed while in question
    suggestion = DuplicateSuggestion.objects.get(report=g2)
    assert (suggestion.case_id, suggestion.candidate_id) == (g2.case_id, g1.case_id)
    assert 0.5 <= suggestion.score < 0.72


def test_rerun_imports_nothing_twice(intake_world, tmp_path):
    lon, lat = f.centre("100101002")
    rows = [[f"描述{i} 路灯不亮", "0102", lon + i * 0.01, lat, f"2026-11-2{i % 3} 08:00"] for i in range(6)]
    path = write_csv(tmp_path / "no-ids.csv", ["description", "category", "lon", "lat", "received_at"], rows)
    run(path)
    before = (Report.objects.count(), Case.objects.count(), TimelineEntry.objects.count())
    out = run(path)
    assert "Already imported: 6" in out and "Taken as new cases: 0" in out
    assert (Report.objects.count(), Case.objects.count(), TimelineEntry.objects.count()) == before
    assert not (tmp_path / "no-ids.csv.progress.json").exists()


def test_resume_after_a_crash_continues_after_the_last_committed_batch(intake_world, tmp_path, monkeypatch):
    lon, lat = f.centre("100104001")
    rows = []
    for i in range(1, 11):
        text = "路灯不亮" if i != 3 else ""  # row 3 is refused
        rows.append([f"C{i}", text, "0102", lon + i * 0.01, lat, f"2026-11-20 {8 + i:02d}:00"])
    path = write_csv(tmp_path / "big.csv", ["external_id", "description", "category", "lon", "lat", "received_at"], rows)
    real_write = bulk.BulkImporter._write
    calls = {"n": 0}

    def crash_in_third_batch(self, b, result, writes=None):
        calls["n"] += 1
        real_write(self, b, result, writes)
        if calls["n"] == 3:
            raise RuntimeError("power cut")

    monkeypatch.setattr(bulk.BulkImporter, "_write", crash_in_third_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        run(path, "--batch-size", "2")
    checkpoint = json.loads((tmp_path / "big.csv.progress.json").read_text(encoding="utf-8"))
    assert checkpoint["row"] == 5  # batches (1, 2) and (4, 5) committed; row 3 refused
    assert sorted(Report.objects.values_list("external_id", flat=True)) == ["C1", "C2", "C4", "C5"]

    monkeypatch.setattr(bulk.BulkImporter, "_write", real_write)
    out = run(path, "--batch-size", "2")
    assert "Continuing after row 5" in out
    assert "Rows read: 10" in out and "Taken as new cases: 9" in out and "Refused: 1" in out
    assert sorted(Report.objects.values_list("external_id", flat=True)) == sorted(f"C{i}" for i in range(1, 11) if i != 3)
    assert Case.objects.count() == 9
    assert [r["row"] for r in read_refused(tmp_path / "big.csv.refused.csv")] == ["3"]
    assert not (tmp_path / "big.csv.progress.json").exists()
    assert list(verify_chain()) == []


def test_a_second_run_on_a_file_being_imported_is_refused(intake_world, tmp_path):
    """A "resume" started while the first run still works would read the checkpoint the
    first rewrites (the first died of it, in a trial)."""
    import fcntl

    lon, lat = f.centre("100104001")
    path = write_csv(tmp_path / "busy.csv", ["description", "lon", "lat"], [["路灯不亮", lon, lat]])
    with open(tmp_path / "busy.csv.progress.lock", "a+") as other_run:  # another process's open file
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other_run.write("4242")
        other_run.flush()
        with pytest.raises(CommandError, match=r"Another import of .*busy\.csv is running \(process 4242\)"):
            run(path)
        assert not Report.objects.exists()
        fcntl.flock(other_run, fcntl.LOCK_UN)  # it ended (or died: the system releases the lock)
    assert "Taken as new cases: 1" in run(path)
    assert not (tmp_path / "busy.csv.progress.lock").exists(), "finished: nothing left beside the file"


def test_a_repeat_of_a_row_from_before_a_resume_is_refused_naming_it(intake_world, tmp_path, monkeypatch):
    lon, lat = f.centre("100104001")
    rows = [[f"K{i}", "路灯不亮", "0102", lon + i * 0.01, lat] for i in range(1, 7)]
    rows.append(["K2", "路灯还是不亮", "0102", lon, lat])  # row 7 repeats row 2's id
    path = write_csv(tmp_path / "k.csv", ["external_id", "description", "category", "lon", "lat"], rows)
    real_write = bulk.BulkImporter._write
    calls = {"n": 0}

    def crash_in_second_batch(self, b, result, writes=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("power cut")
        real_write(self, b, result, writes)

    monkeypatch.setattr(bulk.BulkImporter, "_write", crash_in_second_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        run(path, "--batch-size", "3")
    assert (tmp_path / "k.csv.progress.keys").stat().st_size == 3 * 16, "rows 1-3 committed, their keys kept"
    monkeypatch.setattr(bulk.BulkImporter, "_write", real_write)
    out = run(path, "--batch-size", "3")
    assert "Continuing after row 3" in out and "Refused: 1" in out
    refused = read_refused(tmp_path / "k.csv.refused.csv")
    assert [(r["row"], r["field"]) for r in refused] == [("7", "external_id")]
    assert "Row 2 " in refused[0]["reason"]
    assert Report.objects.get(external_id="K2").description == "路灯不亮"
    assert Report.objects.count() == 6
    assert not (tmp_path / "k.csv.progress.keys").exists() and not (tmp_path / "k.csv.progress.json").exists()


def test_the_kept_keys_survive_a_crash_between_their_file_and_the_checkpoint(tmp_path):
    from chengyun.intake.management.commands.import_reports import _KeysSeen

    path = tmp_path / "x.csv.progress.keys"
    keys = _KeysSeen(path, 0)
    assert [keys.first(k, row) for row, k in enumerate(["a", "b", "a", "c"], 1)] == [1, 2, 1, 4]
    length = keys.commit(2)  # rows 1 and 2 committed; row 4 read ahead, not yet
    assert length == 2 * 16 and path.stat().st_size == length
    with path.open("ab") as fh:
        fh.write(b"\x01" * 16)  # appended by a commit whose checkpoint was never written
    again = _KeysSeen(path, length)
    assert not again.lost
    assert [again.first(k, row) for row, k in [(3, "b"), (4, "c"), (5, "a"), (6, "c")]] == [2, 4, 1, 4]
    assert again.commit(6) == 3 * 16 == path.stat().st_size, "the stray bytes are cut off, then c is added"
    assert again.first("c", 7) == 4
    path.unlink()
    assert _KeysSeen(path, length).lost, "the checkpoint names keys that are gone: said, not a crash"


def test_a_lost_keys_file_is_said_and_the_import_goes_on(intake_world, tmp_path, monkeypatch):
    lon, lat = f.centre("100104001")
    path = write_csv(tmp_path / "l.csv", ["external_id", "description", "category", "lon", "lat"],
                     [[f"L{i}", "路灯不亮", "0102", lon + i * 0.01, lat] for i in range(1, 5)])
    real_write = bulk.BulkImporter._write

    def crash_in_second_batch(self, b, result, writes=None):
        if b.rows[0].external_id == "L3":
            raise RuntimeError("power cut")
        real_write(self, b, result, writes)

    monkeypatch.setattr(bulk.BulkImporter, "_write", crash_in_second_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        run(path, "--batch-size", "2")
    (tmp_path / "l.csv.progress.keys").unlink()
    monkeypatch.setattr(bulk.BulkImporter, "_write", real_write)
    out, err = StringIO(), StringIO()
    call_command("import_reports", str(path), "--batch-size", "2", stdout=out, stderr=err)
    assert "l.csv.progress.keys is missing or short" in err.getvalue()
    assert "Continuing after row 2" in out.getvalue() and Report.objects.count() == 4


def test_restart_ignores_the_checkpoint_and_a_changed_file_starts_over(intake_world, tmp_path):
    lon, lat = f.centre("100101001")
    path = write_csv(tmp_path / "r.csv", ["external_id", "description", "lon", "lat"], [
        ["R1", "路灯不亮", lon, lat], ["R2", "水管爆裂", lon + 0.1, lat]])
    (tmp_path / "r.csv.progress.json").write_text(json.dumps({"version": 1, "size": 1, "head_sha256": "x"}))
    out = run(path)
    assert "Rows read: 2" in out and "Taken as new cases: 2" in out
    out = run(path, "--restart")
    assert "Already imported: 2" in out


def test_closed_rows_are_imported_closed_without_routing(intake_world, tmp_path):
    lon, lat = f.centre("100102002")
    path = write_csv(tmp_path / "history.csv", ["external_id", "description", "category", "lon", "lat", "received_at",
                                                "status", "closed_at"], [
        ["O1", "水管爆裂 路面冒水", "0101", lon, lat, "2026-10-10 09:00", "已办结", "2026-10-11 09:00"],
        ["O2", "水管爆裂 路面冒水", "0101", lon, lat, "2026-10-10 09:05", "closed", ""],
        ["O3", "水管爆裂 路面冒水", "0101", lon, lat, "2026-10-10 09:10", "pending?", ""],
    ])
    out = run(path)
    assert "closed in the sending system: 2" in out
    o1 = Report.objects.select_related("case").get(external_id="O1")
    assert o1.case.status == CaseStatus.CLOSED and not o1.case.assignments.exists()
    assert o1.case.closed_at == datetime(2026, 10, 11, 1, 0, tzinfo=UTC)
    o2 = Report.objects.select_related("case").get(external_id="O2")
    assert o2.case_id != o1.case_id  # closed cases are not duplicate candidates
    assert read_refused(tmp_path / "history.csv.refused.csv")[0]["field"] == "status"


def test_closed_history_the_import_classified_does_not_teach_the_classifier(intake_world, tmp_path):
    """A file without categories: the import's classifier chose them, nobody confirmed them."""
    from chengyun.intake.services import training_examples

    lon, lat = f.centre("100102002")
    rows = [[f"G{i}", "水管爆裂 路面冒水", lon + i * 0.01, lat, "2026-10-10 09:00", "已办结", "2026-10-11 09:00"]
            for i in range(3)]
    rows.append(["G9", "路灯坏了", lon, lat + 0.05, "2026-10-10 09:00", "已办结", "2026-10-11 09:00"])
    labelled = [["L1", "水管爆裂 路面冒水", "0101", lon, lat + 0.1, "2026-10-10 09:00", "已办结", "2026-10-11 09:00"]]
    run(write_csv(tmp_path / "guessed.csv", ["external_id", "description", "lon", "lat", "received_at", "status",
                                            "closed_at"], rows))
    run(write_csv(tmp_path / "labelled.csv", ["external_id", "description", "category", "lon", "lat", "received_at",
                                              "status", "closed_at"], labelled))
    assert Case.objects.filter(status=CaseStatus.CLOSED, category__isnull=False).count() == 5
    texts, labels, _w, info = training_examples()
    assert info["cases"] == 1 and labels == ["0101"], "only the row whose file named its category"


def test_each_batch_is_one_audit_record_whose_digest_can_be_checked(intake_world, tmp_path):
    lon, lat = f.centre("100103001")
    rows = [[f"A{i}", f"路灯坏了 第{i}处", lon + i * 0.01, lat] for i in range(5)]
    path = write_csv(tmp_path / "audit.csv", ["external_id", "description", "lon", "lat"], rows)
    before = AuditRecord.objects.count()
    run(path, "--batch-size", "2")
    records = list(AuditRecord.objects.filter(action=bulk.AUDIT_ACTION).order_by("seq"))
    assert AuditRecord.objects.count() - before == 3 == len(records)
    assert [r.data["reports"] for r in records] == [2, 2, 1]
    numbers = list(Report.objects.order_by("pk").values_list("number", flat=True))
    assert (records[0].data["first"], records[-1].data["last"]) == (numbers[0], numbers[-1])
    assert all(bulk.verify_batch(r) for r in records)
    assert list(verify_chain()) == []
    Report.objects.filter(number=numbers[0]).update(description="changed afterwards")
    assert not bulk.verify_batch(records[0]) and bulk.verify_batch(records[1])


def test_bad_options_are_explained(intake_world, tmp_path):
    path = write_csv(tmp_path / "x.csv", ["text"], [["路灯不亮"]])
    with pytest.raises(CommandError, match="description"):
        run(path)
    with pytest.raises(CommandError, match="Unknown field"):
        run(path, "--map", "colour=text")
    with pytest.raises(CommandError, match="No column"):
        run(path, "--map", "description=body")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(CommandError, match="--format"):
        run(tmp_path / "x.txt")
    assert "Taken as new cases: 1" in run(path, "--map", "description=text")


def test_hotline_history_without_points_is_matched_by_address(intake_world, tmp_path):
    """A hotline system's export has addresses, not points: the same address attaches, as submit() would."""
    path = write_jsonl(tmp_path / "calls.jsonl", [
        {"id": "H1", "text": "和平路12号门口水管爆裂 水一直在冒", "addr": "区1 街道1001 和平路12号",
         "when": "2026-11-20T09:00:00+08:00"},
        {"id": "H2", "text": "和平路12号门口水管爆裂，水一直冒", "addr": "区1街道1001和平路12号",
         "when": "2026-11-20T09:30:00+08:00"},
    ])
    out = run(path, "--map", "description=text", "--map", "address=addr", "--map", "received_at=when",
              "--map", "external_id=id", "--channel", "hotline")
    assert "Attached to an open case as duplicates: 1" in out
    first, second = Report.objects.get(external_id="H1"), Report.objects.get(external_id="H2")
    assert first.lon is None and first.area.code == "100101001"
    assert second.case_id == first.case_id and second.duplicate == DuplicateOutcome.ATTACHED
    why = second.duplicate_explanation
    assert (why["by"], why["place"], why["place_by"], why["best_case"]) == ("place", 1.0, "address", first.case.number)


def _feed(tmp_path, name, minutes_ago, street="区1 街道1001 "):
    from datetime import timedelta

    from chengyun.clock import now

    calls = [{"id": f"{name}-{k}", "text": f"{house}水管爆裂 家里没水了", "addr": street + house,
              "when": (now() - timedelta(minutes=m)).isoformat(), "cat": "0101"}
             for k, (house, m) in enumerate(zip(("和平路1号", "和平路9号", "幸福路3号"), minutes_ago, strict=True))]
    return write_jsonl(tmp_path / f"{name}.jsonl", calls)


FEED_MAP = ["--map", "description=text", "--map", "address=addr", "--map", "received_at=when",
            "--map", "external_id=id", "--map", "category=cat", "--channel", "hotline"]


def test_a_live_feed_with_warnings_raises_the_burst_it_brings(intake_world, tmp_path):
    """Another hotline system's calls of the last half hour: three no-water
    calls in one street raise the warning the same calls would raise here."""
    from chengyun.intake.models import ClusterWarning

    out = run(_feed(tmp_path, "live", (25, 15, 5)), *FEED_MAP, "--warnings")
    warning = ClusterWarning.objects.get()
    assert warning.by_area and warning.area.code == "100101001" and warning.report_count == 3
    assert warning.case.channel == "discovery"
    assert "Cluster warnings raised or joined: 1" in out
    assert list(verify_chain()) == []


def test_history_raises_no_warning_with_or_without_the_option(intake_world, tmp_path):
    from chengyun.intake.models import ClusterWarning

    run(_feed(tmp_path, "plain", (25, 15, 5)), *FEED_MAP)
    assert not ClusterWarning.objects.exists(), "no option, no warnings"
    out = run(_feed(tmp_path, "old", (3000, 2990, 2980)), *FEED_MAP, "--warnings")
    assert not ClusterWarning.objects.exists(), "two days ago: the burst is long over"
    assert "Cluster warnings raised or joined: 0" in out


def test_a_failed_cluster_check_keeps_the_import_and_says_so(intake_world, tmp_path, monkeypatch):
    from chengyun.intake.models import ClusterWarning

    def busy(arrivals, *, open_case, seen=None):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(bulk.cluster, "check_many", busy)
    out, err = StringIO(), StringIO()
    call_command("import_reports", str(_feed(tmp_path, "busy", (25, 15, 5))), *FEED_MAP, "--warnings",
                 stdout=out, stderr=err)
    assert Report.objects.count() == 3, "the batch stays imported"
    assert "The cluster check failed for 3 imported rows (RuntimeError: database is locked)" in err.getvalue()
    assert not ClusterWarning.objects.exists()


def test_an_import_attaches_repeats_of_a_report_nobody_has_classified(intake_world, tmp_path, settings):
    settings.INTAKE_CONFIDENCE_THRESHOLD = 1.01  # the classifier is never sure enough
    lon, lat = f.centre("100103001")
    path = write_jsonl(tmp_path / "feed.jsonl", [
        {"id": "U1", "text": "这里有个奇怪的东西 一直响", "x": lon, "y": lat, "when": "2026-11-20T09:00:00+08:00"},
        {"id": "U2", "text": "这里有个奇怪的东西 一直响", "x": lon, "y": lat + 0.0001, "when": "2026-11-20T09:10:00+08:00"},
    ])
    run(path, "--map", "description=text", "--map", "lon=x", "--map", "lat=y", "--map", "received_at=when",
        "--map", "external_id=id")
    first, again = Report.objects.get(external_id="U1"), Report.objects.get(external_id="U2")
    assert first.case.category is None
    assert again.case_id == first.case_id and again.duplicate == DuplicateOutcome.ATTACHED
    assert again.duplicate_explanation["category_factor"] == 0.8


def test_an_import_asks_about_a_report_in_another_language_at_the_spot_and_never_attaches_it(
        intake_world, tmp_path, settings):
    """As the live pipeline (dedup.py): texts in two languages are not compared."""
    settings.DUPLICATE_ATTACH_SCORE = 0.6
    lon, lat = f.centre("100102001")
    path = write_jsonl(tmp_path / "two.jsonl", [
        {"external_id": "Z1", "description": "路边水管破了一直在喷水", "category": "0101", "lon": lon, "lat": lat,
         "received_at": "2026-11-20T09:00:00+08:00"},
        {"external_id": "E1", "description": "A water pipe burst by the road, spraying water", "category": "0101",
         "lon": lon, "lat": lat, "received_at": "2026-11-20T09:05:00+08:00"},
        {"external_id": "Z2", "description": "路边水管破了，一直在喷水", "category": "0101", "lon": lon, "lat": lat,
         "received_at": "2026-11-20T09:10:00+08:00"},
    ])
    run(path)
    first, english, again = (Report.objects.get(external_id=x) for x in ("Z1", "E1", "Z2"))
    assert english.duplicate == DuplicateOutcome.ASK and english.case_id != first.case_id
    assert english.duplicate_explanation["text"] is None
    assert english.duplicate_explanation["text_compared"] is False
    assert english.duplicate_explanation["weights"] == {"distance": 0.6364, "time": 0.3636}
    assert english.duplicate_explanation["best_case"] == first.case.number
    assert DuplicateSuggestion.objects.get(report=english).candidate_id == first.case_id
    # The Chinese repeat attaches to the Chinese case, not to the English one it is as near to.
    assert again.duplicate == DuplicateOutcome.ATTACHED and again.case_id == first.case_id
