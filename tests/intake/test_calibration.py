"""Calibrated confidences: the classifier's scores are divided by a temperature
fitted on the held-out cases, so that a confidence says how often such a
decision is right; with too few held-out cases nothing is fitted."""

from __future__ import annotations

import random
import re
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from chengyun.intake import classifier
from chengyun.intake.classifier import (
    MIN_CALIBRATION_CASES,
    TextClassifier,
    calibrate,
    train_and_store,
)
from chengyun.intake.models import ClassifierModel

from .conftest import LIGHTS, WATER

NOISE = ["小区门口", "十字路口", "已经好几天了", "请尽快处理", "near the school", "please fix it", "我要投诉", "谢谢"]


def corpus(n: int, seed: int = 5) -> tuple[list[str], list[str]]:
    """``n`` texts about water leaks or street lights, with words that say
    nothing of either around them; one in ten is filed under the other
    category (as staff sometimes do), so no model can be sure of every text."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        code, pool = ("0101", WATER) if i % 2 else ("0102", LIGHTS)
        words = [rng.choice(pool)] + rng.sample(NOISE, 3)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(code if rng.random() >= 0.1 else {"0101": "0102", "0102": "0101"}[code])
    return texts, labels


@pytest.fixture(scope="module")
def fitted() -> tuple[TextClassifier, list[str], list[str]]:
    texts, labels = corpus(240)
    model = TextClassifier.fit(texts, labels, C=0.5)  # strongly regularised: unsure of itself
    held_texts, held_labels = corpus(400, seed=6)
    return model, held_texts, held_labels


def test_the_temperature_undoes_any_scaling_of_the_scores(fitted):
    model, texts, truth = fitted
    base = calibrate(model, texts, truth, threshold=0.5)
    assert base["fitted"] and base["cases"] == 400
    assert base["temperature"] < 1, "a strongly regularised model is less sure than it is right"
    doubled = calibrate(model.scaled(0.5), texts, truth, threshold=0.5)
    assert doubled["temperature"] == pytest.approx(2 * base["temperature"], rel=0.05)


def test_calibrated_confidences_route_more_and_stay_right(fitted):
    model, texts, truth = fitted
    c = calibrate(model, texts, truth, threshold=0.8)
    assert c["routed"] > c["routed_before"]
    # One label in ten is wrong: at best 90 % right. What is routed at 0.8 is right about 8 times in 10 or more.
    assert c["right"] >= 0.8
    calibrated = model.scaled(c["temperature"])
    raw, sharp = model.predict(texts[0]), calibrated.predict(texts[0])
    assert raw.code == sharp.code and sharp.confidence > raw.confidence
    # Only the confidences change: the same category for every text.
    assert calibrated.predict_codes(texts)[0] == model.predict_codes(texts)[0]


def test_too_few_held_out_cases_are_not_calibrated(fitted):
    model, texts, truth = fitted
    c = calibrate(model, texts[: MIN_CALIBRATION_CASES - 1], truth[: MIN_CALIBRATION_CASES - 1], threshold=0.5)
    assert c == {"temperature": 1.0, "cases": MIN_CALIBRATION_CASES - 1, "fitted": False}


@pytest.mark.django_db
def test_the_stored_version_uses_the_temperature_it_was_fitted_with(intake_world):
    texts, labels = corpus(1200)
    rec = train_and_store(texts, labels, test_share=0.2, seed=1, C=0.5).record
    c = rec.params["calibration"]
    assert c["fitted"] and c["cases"] == rec.n_test == 240 and c["temperature"] != 1.0
    stored = TextClassifier.loads(rec.blob)
    # Refitted on all the examples with the held-out fit's balance of data and regularisation.
    assert rec.params["C_refit"] == pytest.approx(0.5 * rec.n_train / (rec.n_train + rec.n_test), rel=1e-3)
    plain = TextClassifier.fit(texts, labels, C=rec.params["C_refit"])
    X = plain.features.transform(texts[:20])
    assert np.allclose(stored.probabilities(X), plain.scaled(c["temperature"]).probabilities(X), atol=1e-5)


def train_on(monkeypatch, n: int) -> str:
    """``chengyun train-classifier`` on ``n`` examples of :func:`corpus`; its output."""
    from chengyun.intake.management.commands import train_classifier

    texts, labels = corpus(n)
    monkeypatch.setattr(train_classifier, "training_examples",
                        lambda limit=None: (texts, labels, [1.0] * len(texts), {"cases": len(texts), "corrected": 0}))
    out = StringIO()
    call_command("train_classifier", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_train_classifier_says_what_calibration_does(intake_world, monkeypatch):
    out = train_on(monkeypatch, 1200)
    line = re.search(r"Confidences calibrated on the held-out examples \(temperature (\d+\.\d\d)\)\. At the threshold "
                     r"0\.50, (\d+\.\d)% of them would be routed automatically, (\d+\.\d)% of those right "
                     r"\(uncalibrated: (\d+\.\d)% routed\)\.", out)
    assert line, out
    v = ClassifierModel.objects.get(active=True)
    assert float(line[1]) == pytest.approx(v.params["calibration"]["temperature"], abs=0.005)
    assert float(line[2]) == pytest.approx(100 * v.params["calibration"]["routed"], abs=0.05)


@pytest.mark.django_db
def test_few_examples_say_they_are_not_calibrated(intake_world, monkeypatch):
    assert (f"Confidences not calibrated: 20 held-out examples, at least {classifier.MIN_CALIBRATION_CASES} "
            "are needed.") in train_on(monkeypatch, 100)
