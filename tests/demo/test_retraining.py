"""The demo's second classifier, trained from the generated cases in a
separate process while the sensors load: stored by that process on the same
database, in the audit chain, and activated only if it scores no worse."""

from __future__ import annotations

import pytest
from django.db import connection

from chengyun.audit.services import verify_chain
from chengyun.demo import texts as demo_texts
from chengyun.intake import services as intake_services
from chengyun.intake.classifier import train_and_store
from chengyun.intake.models import ClassifierModel

WATER = ["自来水管破裂 路面冒水", "水管爆了 满地是水", "water main burst on the road", "马路上自来水喷出来"]
LIGHTS = ["路灯不亮 晚上很黑", "路灯坏了", "street light is out at night", "路灯杆歪了 灯也不亮"]


def _examples(n: int):
    texts = [f"{t} {i}" for i in range(n // 8) for t in WATER + LIGHTS]
    labels = ["0101" if t.startswith(tuple(WATER)) else "0102" for t in texts]
    return texts, labels, [1.0] * len(texts), {"cases": len(texts), "corrected": 0}


@pytest.mark.django_db(transaction=True)
def test_retraining_in_a_separate_process(monkeypatch):
    train_and_store(WATER * 3 + LIGHTS * 3, ["0101"] * 12 + ["0102"] * 12, test_share=0.2, seed=1, note="first")
    first = ClassifierModel.objects.get()
    monkeypatch.setattr(intake_services, "training_examples", lambda: _examples(240))

    job = demo_texts.start_retraining(background=True)
    lines: list[str] = []
    job.finish(lines.append)

    # A file database is shared with the training process; an in-memory one is not, so it trains here.
    assert (job.future is not None) == (not (connection.vendor == "sqlite" and connection.is_in_memory_db()))
    second = ClassifierModel.objects.get(version=2)
    assert second.data_note.startswith("generated demo cases (240 cases")
    assert second.n_train + second.n_test == 240
    rival = second.params["rival_on_held_out"]
    assert rival["version"] == first.version
    assert second.active == (round(second.accuracy, 4) >= rival["accuracy"]), "compared on the same held-out cases"
    assert ClassifierModel.objects.filter(active=True).count() == 1
    assert "v2 retrained from 240 generated cases" in lines[0]
    assert list(verify_chain()) == []


@pytest.mark.django_db
def test_no_retraining_without_enough_cases(monkeypatch):
    train_and_store(WATER * 3 + LIGHTS * 3, ["0101"] * 12 + ["0102"] * 12, test_share=0.2, seed=1, note="first")
    monkeypatch.setattr(intake_services, "training_examples", lambda: _examples(120))
    assert demo_texts.start_retraining(background=True) is None
    assert ClassifierModel.objects.count() == 1
