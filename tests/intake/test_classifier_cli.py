"""Staff corrections feed the next training; ``chengyun train-classifier``
stores, lists, activates and rolls back versions; the classifier API."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chengyun.audit.models import AuditRecord
from chengyun.intake.classifier import TAXONOMY_REPEAT, active_model, train_and_store
from chengyun.intake.models import CategoryCorrection, ClassifierModel
from chengyun.intake.services import CORRECTION_WEIGHT, ReportInput, submit, training_examples
from chengyun.taxonomy.models import Category

from .. import factories as f
from .conftest import LIGHTS, WATER
from .reports_api import get, post, post_report

MODELS = "/api/v1/classifier/models"


def case_action(client, user, number: str, action: str, **body) -> dict:
    return post(client, user, f"/api/v1/cases/{number}/actions/{action}", **body)


def handled_cases(*, water: int, lights: int) -> None:
    """Reports that the platform classified and dispatched (so: training examples),
    1 km apart so that none is a duplicate of another."""
    texts = [(f"{WATER[i % len(WATER)]} {i}号楼", "0101") for i in range(water)]
    texts += [(f"{LIGHTS[i % len(LIGHTS)]} {i}号楼", "0102") for i in range(lights)]
    for i, (text, code) in enumerate(texts):
        res = submit(ReportInput(channel="web", description=text, category=code,
                                 lon=120.02 + 0.01 * (i % 90), lat=30.1 + 0.01 * (i // 90)))
        assert res.case.status == "dispatched", (text, res.case.status)


def run(*args) -> str:
    out = StringIO()
    call_command("train_classifier", *args, stdout=out)
    return out.getvalue()


# --------------------------------------------------------------------------- corrections


def test_reclassifying_a_case_records_a_correction_weighted_in_training(client, staff, sensor):
    lon, lat = f.centre("100101001")
    sent = post_report(client, sensor, description="水管爆裂，路面一直冒水", category="0102", lon=lon, lat=lat)
    assert sent["case_status"] == "new" and sent["category"] == "0102"
    dispatcher = staff["dispatcher"]

    after = case_action(client, dispatcher, sent["case"], "reclassify", category="0101", reason="it is a leak")
    assert after["category"] == "0101"
    correction = CategoryCorrection.objects.get()
    assert (correction.case.number, correction.from_category.code, correction.to_category.code) == (
        sent["case"], "0102", "0101")
    assert correction.by == dispatcher and correction.classifier_version == 1
    assert "水管爆裂" in correction.text

    case_action(client, dispatcher, sent["case"], "accept")
    assert case_action(client, dispatcher, sent["case"], "dispatch")["status"] == "dispatched"
    handled_cases(water=2, lights=2)
    texts, labels, weights, info = training_examples()
    assert len(texts) == 5 and info == {"cases": 5, "corrected": 1}
    corrected = [w for t, w in zip(texts, weights, strict=True) if "水管爆裂，路面一直冒水" in t]
    assert corrected == [CORRECTION_WEIGHT] and CORRECTION_WEIGHT == 3.0
    assert labels[texts.index(next(t for t in texts if "水管爆裂，路面一直冒水" in t))] == "0101"
    assert sorted(w for w in weights if w != CORRECTION_WEIGHT) == [1.0] * 4


# --------------------------------------------------------------------------- the command


def test_train_refuses_too_few_examples_and_a_single_category(intake_world):
    with pytest.raises(CommandError, match="Too few examples"):
        run()
    handled_cases(water=3, lights=0)
    with pytest.raises(CommandError, match="at least two"):
        run("--min-examples", "1")
    assert ClassifierModel.objects.count() == 1


def test_train_list_rollback_and_activate(client, staff, intake_world):
    handled_cases(water=14, lights=14)
    out = run("--min-examples", "20", "--seed", "3", "--note", "test run")

    assert "28 examples (0 corrected by staff, weighted 3x) in 2 categories." in out
    assert re.search(r"Accuracy: \d+\.\d%\. Macro F1: \d+\.\d%\.", out)
    assert "Stored as version 2 (active)." in out
    v2 = ClassifierModel.objects.get(version=2)
    assert v2.active and v2.data_note == "test run" and v2.trained_by == "cli:train-classifier"
    assert v2.n_train + v2.n_test == 28 and v2.n_test > 0
    assert 0 <= v2.accuracy <= 1 and 0 <= v2.macro_f1 <= 1
    assert set(v2.per_category) == {"0101", "0102"}
    # The per-category table, worst first.
    rows = re.findall(r"^(0101|0102)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+(\d+)", out, re.M)
    assert sorted(r[0] for r in rows) == ["0101", "0102"]
    f1s = [float(r[3]) for r in rows]
    assert f1s == sorted(f1s)
    assert sum(int(r[4]) for r in rows) == v2.n_test
    assert active_model()[0] == 2
    assert AuditRecord.objects.filter(action="classifier.train", data__version=2).exists()

    listing = run("--list")
    marks = {version: mark for mark, version in re.findall(r"^([* ]) +(\d+) ", listing, re.M)}
    assert marks == {"1": " ", "2": "*"}

    assert "Rolled back from version 2 to version 1." in run("--rollback")
    assert active_model()[0] == 1
    assert AuditRecord.objects.filter(action="classifier.activate", actor="cli:train-classifier",
                                      data__version=1).exists()
    assert re.search(r"^\*\s+1\s", run("--list"), re.M)
    # A rollback goes back to the version in use before: here, it undoes the last one.
    assert "Rolled back from version 1 to version 2." in run("--rollback")

    out = run("--min-examples", "20", "--no-activate")
    assert "Stored as version 3 (not active; activate it with --activate 3)." in out
    assert "Version 1 is now active." in run("--activate", "1")
    assert "Version 3 is now active." in run("--activate", "3")
    # Back to the version used before 3, not to 2, the one numbered before it.
    assert "Rolled back from version 3 to version 1." in run("--rollback")
    assert "Version 2 is now active." in run("--activate", "2")
    assert ClassifierModel.objects.get(active=True).version == 2
    with pytest.raises(CommandError, match="no classifier version 9"):
        run("--activate", "9")
    # A new report is classified by the active version.
    lon, lat = f.centre("100102001")
    assert post_report(client, staff["operator"], description="路灯坏了", lon=lon, lat=lat)["classifier_version"] == 2


def test_a_version_scoring_well_below_the_active_one_is_stored_but_not_put_in_use(intake_world, monkeypatch):
    from chengyun.intake.management.commands import train_classifier

    handled_cases(water=14, lights=14)
    # So that any new version counts as worse than the active one on the same held-out cases.
    monkeypatch.setattr(train_classifier, "MAX_F1_DROP", -0.01)
    out, err = StringIO(), StringIO()
    call_command("train_classifier", "--min-examples", "20", stdout=out, stderr=err)
    assert not ClassifierModel.objects.get(version=2).active and active_model()[0] == 1
    assert "NOT active" in err.getvalue() and "--activate 2" in err.getvalue()
    assert "The active version 1 on the same held-out examples" in out.getvalue()
    rival = ClassifierModel.objects.get(version=2).params["rival_on_held_out"]
    assert rival["version"] == 1 and 0 <= rival["macro_f1"] <= 1
    assert AuditRecord.objects.filter(action="classifier.train", data__version=2, data__active=False).exists()
    assert "Stored as version 3 (active)." in run("--min-examples", "20", "--force") and active_model()[0] == 3


# --------------------------------------------------------------------------- the API


def test_nothing_to_roll_back_to_when_one_version_was_ever_in_use(intake_world):
    with pytest.raises(CommandError, match="No version was in use before version 1"):
        run("--rollback")


def test_classifier_versions_for_staff_only(client, staff):
    listed = get(client, staff["dispatcher"], MODELS)
    assert [(m["version"], m["active"]) for m in listed] == [(1, True)]
    assert {"accuracy", "macro_f1", "per_category", "n_train", "n_test"} <= set(listed[0])
    assert "blob" not in listed[0]
    for user in (staff["leader"], staff["water"], staff["inspector"]):
        assert get(client, user, MODELS, expect=403)["code"] == "forbidden"


def test_a_text_is_classified_as_the_pipeline_would_and_nothing_is_stored(client, staff, sensor):
    from chengyun.cases.models import Case
    from chengyun.intake.models import Report

    body = post(client, sensor, "/api/v1/classifier/classify", text="路灯不亮 晚上很黑")
    assert body["model"] == 1 and body["guess"]["category"] == "0102" and body["guess"]["name"] == "路灯"
    assert body["certain"] == (body["guess"]["confidence"] >= body["threshold"])
    assert body["alternatives"] and all(a["category"] != "0102" for a in body["alternatives"])
    assert body["terms"] and all(w > 0 for _t, w in body["terms"])
    shown = [t for t, _w in body["terms"]]
    assert len(shown) == len(set(shown)) and all(t == t.strip() for t in shown), "each term once"
    assert not Report.objects.exists() and not Case.objects.exists()
    client.force_login(sensor)
    answer = client.post("/api/v1/classifier/classify", data={"text": "  "}, content_type="application/json",
                         HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer["field"] == "text" and answer["code"] == "invalid"
    nobody = f.make_user(username="nobody")
    client.force_login(nobody)
    assert client.post("/api/v1/classifier/classify", data={"text": "路灯"},
                       content_type="application/json").status_code == 403


def test_activate_for_administrators_only(client, staff):
    train_and_store(WATER * 2 + LIGHTS * 2, ["0101"] * 20 + ["0102"] * 20, activate=False, note="second")
    url = f"{MODELS}/2/activate"
    assert post(client, staff["dispatcher"], url, expect=403)["code"] == "forbidden"
    assert ClassifierModel.objects.get(active=True).version == 1

    done = post(client, staff["root"], url)
    assert done["version"] == 2 and done["active"]
    assert [(m["version"], m["active"]) for m in get(client, staff["root"], MODELS)] == [(2, True), (1, False)]
    assert AuditRecord.objects.filter(action="classifier.activate", actor="root", data__version=2).exists()
    post(client, staff["root"], f"{MODELS}/9/activate", expect=404)


def test_a_case_only_the_classifier_categorised_trains_once_a_department_has_taken_it_on(intake_world, staff):
    from chengyun.cases import services as case_services

    lon, lat = f.centre("100101001")
    guessed = submit(ReportInput(channel="web", description="水管爆裂，路面一直冒水", lon=lon, lat=lat)).case
    assert guessed.status == "dispatched" and guessed.route_explanation["classification"]["decided_by"] == "classifier"
    handled_cases(water=1, lights=1)  # the reporter chose these categories: they count at once
    assert training_examples()[3]["cases"] == 2, "the model's own guess does not teach the model"
    case_services.start_case(guessed, by=staff["root"])
    assert training_examples()[3]["cases"] == 3


def test_a_case_a_dispatcher_dispatched_by_hand_trains(client, staff, sensor):
    lon, lat = f.centre("100101001")
    sent = post_report(client, sensor, description="水管爆裂，路面一直冒水", category="0102", lon=lon, lat=lat)
    assert sent["case_status"] == "new"  # the reporter and the classifier disagree: a dispatcher decides
    case_action(client, staff["dispatcher"], sent["case"], "accept")
    assert case_action(client, staff["dispatcher"], sent["case"], "dispatch")["status"] == "dispatched"
    assert training_examples()[3]["cases"] == 1


def test_the_categories_keywords_teach_short_texts_and_are_never_held_out(intake_world):
    lights = intake_world.categories["0102"]
    lights.keywords_en = ["lamp post dark", "streetlight out"]
    lights.save()
    handled_cases(water=14, lights=14)  # all in Chinese
    run("--min-examples", "20", "--seed", "3")
    record = ClassifierModel.objects.get(active=True)
    assert record.n_train + record.n_test == 28, "the scores are on the city's own cases only"
    words = set()
    for cat in Category.objects.reportable():
        words |= {w for w in (cat.name, cat.name_en, *cat.keywords_zh, *cat.keywords_en) if w}
    assert record.params["extra_examples"] == TAXONOMY_REPEAT * len(words)
    _version, model = active_model()
    for text in ("lamp post dark", "streetlight out", lights.name):
        got = model.predict(text)
        assert got.code == "0102" and got.confidence > 0.6, (text, got.code, got.confidence)
