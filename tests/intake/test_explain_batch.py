"""The batch explanations (:meth:`TextClassifier.explanations` and
:meth:`~TextClassifier.explain_rows`, for the intake pipeline's batches) are
the per-row ones (:meth:`~TextClassifier.explain_row`, ``predict()``'s), bit
for bit: the same dicts and the same JSON text, down to the order of terms
of equal weight and the rounding. Generated reports in Chinese and English
(seeded), with empty and one-character texts and texts of no known n-gram."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from chengyun.intake.classifier import Prediction, TextClassifier, _round4

TOPICS = {
    "0101": ["水管爆裂", "自来水管漏水", "路面冒水", "water main burst", "pipe leaking", "flooding the road"],
    "0102": ["路灯不亮", "路灯坏了", "灯杆歪了", "street light is out", "lamp flickering", "dark at night"],
    "0201": ["垃圾堆放", "垃圾桶满了", "没人清运", "rubbish piled up", "bins overflowing", "litter everywhere"],
    "0202": ["噪音扰民", "半夜施工", "广场舞太吵", "noise at night", "loud music", "construction noise"],
    "0301": ["占道经营", "摆地摊", "非机动车乱停", "street vendors", "bikes blocking", "stall on pavement"],
}
PLACES = ["小区门口", "地铁口", "学校旁边", "弄堂里", "near the school", "by the bus stop", "on our street", ""]
TAILS = ["希望有关部门管一管。", "影响居民出行。", "已经好几天了", "please fix it", "thanks", ""]
ODD = ["", " ", "\n", "a", "灯", "?", "…", "Ω≈ç√", "🙂🙂", "ЖЖЖ", "x" * 300, "漏" * 300, "   \t  ", "ÿ"]


def _text(rng: random.Random, code: str) -> str:
    parts = [rng.choice(PLACES), rng.choice(TOPICS[code]), rng.choice(TAILS)]
    if rng.random() < 0.3:
        parts.append(rng.choice(TOPICS[rng.choice(list(TOPICS))]))
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.5:  # title and description alike, as many reports are: equal weights
        text = f"{text}\n{text}"
    return text


@pytest.fixture(scope="module")
def model() -> TextClassifier:
    rng = random.Random(7)
    texts, labels = [], []
    for code in TOPICS:
        for _ in range(40):
            texts.append(_text(rng, code))
            labels.append(code)
    return TextClassifier.fit(texts, labels)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(11)
    out = [_text(rng, rng.choice(list(TOPICS))) for _ in range(400)]
    for k, odd in enumerate(ODD):
        out.insert(k * 29 % len(out), odd)
    return out


def _reference(model: TextClassifier, X, P, i: int) -> dict:
    """explain_row(...).explanation(version) as it was before the batch form."""
    p = P[i]
    order = np.argsort(-p)
    best = int(order[0])
    start, end = X.indptr[i], X.indptr[i + 1]
    indices = X.indices[start:end]
    contrib = X.data[start:end] * model.coef[best, indices]
    top = np.argsort(-contrib)[:6]
    terms = [(model.features.feature_text(int(indices[j])).strip() or "␣", float(contrib[j]))
             for j in top if contrib[j] > 0]
    return Prediction(
        code=model.codes[best], confidence=float(p[best]),
        alternatives=[(model.codes[int(j)], float(p[j])) for j in order[1:4]], terms=terms,
    ).explanation(3)


def _batches(model, texts, size):
    for s in range(0, len(texts), size):
        X = model.features.transform(texts[s: s + size])
        yield X, model.probabilities(X)


@pytest.mark.parametrize("size", [1, 7, 200])
def test_batch_equals_per_row(model, texts, size):
    seen_ties = seen_short = 0
    for X, P in _batches(model, texts, size):
        batch = model.explanations(X, P, 3)
        rows = model.explain_rows(X, P)
        assert len(batch) == len(rows) == X.shape[0]
        for i in range(X.shape[0]):
            one = model.explain_row(X, P, i)
            assert rows[i] == one
            expected = one.explanation(3)
            assert expected == _reference(model, X, P, i)
            assert batch[i] == expected
            assert list(batch[i]) == ["model", "category", "confidence", "alternatives", "terms"]
            assert json.dumps(batch[i], ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)
            assert json.dumps(batch[i]) == json.dumps(expected)
            weights = [w for _, w in one.terms]
            seen_ties += len(set(weights)) < len(weights)
            seen_short += len(one.terms) <= 1
    # the corpus exercises what makes it hard: equal weights, rows of (almost) no terms
    assert seen_ties > 20
    assert seen_short >= 5


def test_no_known_ngrams_and_empty_batch(model):
    texts = ["ЖЖЖ", "", "🙂", "Ω"]
    X = model.features.transform(texts)
    assert X.nnz == len(texts)  # only the space that frames every text
    assert {model.features.feature_text(k) for k in X.indices} == {" "}
    P = model.probabilities(X)
    batch = model.explanations(X, P, None)
    assert all(e["terms"] in ([], [["␣", e["terms"][0][1]]]) for e in batch)
    assert batch == [model.explain_row(X, P, i).explanation(None) for i in range(len(texts))]
    # a model without the space feature: no term at all
    X = model.features.transform(texts)
    X.data[:] = 0.0
    P = model.probabilities(X)
    batch = model.explanations(X, P, None)
    assert [e["terms"] for e in batch] == [[]] * len(texts)
    assert batch == [model.explain_row(X, P, i).explanation(None) for i in range(len(texts))]
    X0 = model.features.transform([])
    assert model.explanations(X0, model.probabilities(X0), 3) == []
    assert model.explain_rows(X0, model.probabilities(X0)) == []


def test_other_counts_of_terms_and_alternatives(model, texts):
    X = model.features.transform(texts[:120])
    P = model.probabilities(X)
    for n_terms, n_alternatives in [(1, 0), (3, 1), (50, 10)]:
        batch = model.explanations(X, P, 1, n_terms, n_alternatives)
        assert batch == [model.explain_row(X, P, i, n_terms, n_alternatives).explanation(1) for i in range(120)]


def test_equal_probabilities_are_ordered_as_per_row():
    """Categories of equal probability (equal weights) come in explain_row's order."""
    rng = np.random.default_rng(3)
    model = TextClassifier.fit(["a b", "c d", "e f"] * 3, ["x", "y", "z"] * 3)
    model.coef[:] = np.round(rng.normal(size=model.coef.shape), 1)
    model.coef[2] = model.coef[1]  # y and z tie everywhere
    model.intercept[:] = 0
    X = model.features.transform(["a", "c d", "zzz", "e f a", ""])
    P = model.probabilities(X)
    batch = model.explanations(X, P, 2, 6, 2)
    assert batch == [model.explain_row(X, P, i, 6, 2).explanation(2) for i in range(X.shape[0])]


def test_round4_is_round():
    rng = np.random.default_rng(5)
    values = np.concatenate([
        rng.random(20_000).astype(np.float32),
        (rng.random(5_000) * 3).astype(np.float32),
        np.arange(0, 2, 1 / 32, dtype=np.float32),  # exact halves of the 4th decimal (1/32 = 0.03125)
        (np.arange(20_000) / 1e4 + 0.00005).astype(np.float32),  # near halves
        np.array([0.0, 1.0, 1e-9, 5e-5, 1e4, 1e7, np.inf, -np.inf], np.float32),
    ])
    expected = [round(float(v), 4) for v in values]
    got = _round4(values)
    assert [repr(v) for v in got] == [repr(v) for v in expected]
    assert repr(_round4(np.array([np.nan]))[0]) == "nan"
