"""Text -> category with a confidence and the terms that drove it.

A :class:`TextClassifier` is character n-gram TF-IDF features
(:mod:`.textfeatures`) and a multinomial logistic regression. Training holds
out a stratified share of the examples and reports accuracy and per-category
precision/recall on it; the stored model is then refitted on every example.
Models live in the database (:class:`~chengyun.intake.models.ClassifierModel`)
with their scores; exactly one is active and the previous ones stay for
rollback.
"""

from __future__ import annotations

import pickle
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Max

from chengyun.clock import now

from .textfeatures import CharNgramTfidf


@dataclass
class Prediction:
    code: str
    confidence: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    terms: list[tuple[str, float]] = field(default_factory=list)

    def explanation(self, version: int | None) -> dict:
        return {
            "model": version,
            "category": self.code,
            "confidence": round(self.confidence, 4),
            "alternatives": [[c, round(p, 4)] for c, p in self.alternatives],
            "terms": [[t, round(w, 4)] for t, w in self.terms],
        }


class TextClassifier:
    def __init__(self, features: CharNgramTfidf, codes: list[str], coef: np.ndarray, intercept: np.ndarray):
        self.features = features
        self.codes = list(codes)
        self.coef = coef.astype(np.float32)
        self.intercept = intercept.astype(np.float32)

    # ------------------------------------------------------------- training
    @classmethod
    def fit(cls, texts: list[str], labels: list[str], weights=None, *, C: float = 20.0, min_df: int = 2,
            max_iter: int = 300) -> TextClassifier:
        from sklearn.linear_model import LogisticRegression

        features = CharNgramTfidf(min_df=min_df)
        X = features.fit_transform(texts)
        model = LogisticRegression(C=C, max_iter=max_iter)
        model.fit(X, labels, sample_weight=weights)
        codes = [str(c) for c in model.classes_]
        coef, intercept = model.coef_, model.intercept_
        if len(codes) == 2:  # sklearn keeps one row for two classes
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        return cls(features, codes, coef, intercept)

    # ------------------------------------------------------------ predicting
    def probabilities(self, X) -> np.ndarray:
        scores = np.asarray(X @ self.coef.T) + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def predict_codes(self, texts: list[str], batch: int = 20_000) -> tuple[list[str], np.ndarray]:
        """Bulk: the best category and its probability for every text."""
        out_codes: list[str] = []
        out_conf = np.empty(len(texts), np.float32)
        codes = np.array(self.codes, dtype=object)
        for start in range(0, len(texts), batch):
            P = self.probabilities(self.features.transform(texts[start: start + batch]))
            best = P.argmax(axis=1)
            out_codes.extend(codes[best])
            out_conf[start: start + len(best)] = P[np.arange(len(best)), best]
        return out_codes, out_conf

    def predict(self, text: str, n_terms: int = 6, n_alternatives: int = 3) -> Prediction:
        X = self.features.transform([text])
        return self.explain_row(X, self.probabilities(X), 0, n_terms, n_alternatives)

    def explain_row(self, X, P: np.ndarray, i: int, n_terms: int = 6, n_alternatives: int = 3) -> Prediction:
        """The prediction for row ``i`` of a featurised batch ``X`` with its
        probabilities ``P``: the best category, the runners-up, and the terms
        that pushed most towards the best one (feature value x weight)."""
        p = P[i]
        order = np.argsort(-p)
        best = int(order[0])
        start, end = X.indptr[i], X.indptr[i + 1]
        indices = X.indices[start:end]
        contrib = X.data[start:end] * self.coef[best, indices]
        top = np.argsort(-contrib)[:n_terms]
        terms = [(self.features.feature_text(int(indices[j])).strip() or "␣", float(contrib[j]))
                 for j in top if contrib[j] > 0]
        return Prediction(
            code=self.codes[best], confidence=float(p[best]),
            alternatives=[(self.codes[int(j)], float(p[j])) for j in order[1: 1 + n_alternatives]],
            terms=terms,
        )

    def similarity(self, a: str, b_texts: list[str]) -> list[float]:
        """Cosine similarity of ``a`` to each of ``b_texts`` in the same feature space."""
        if not b_texts:
            return []
        X = self.features.transform([a, *b_texts])
        return [float(v) for v in np.asarray((X[1:] @ X[0].T).todense()).ravel()]

    # ------------------------------------------------------------ storage
    def dumps(self) -> bytes:
        return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), 6)

    @staticmethod
    def loads(blob: bytes) -> TextClassifier:
        return pickle.loads(zlib.decompress(bytes(blob)))


# --------------------------------------------------------------------------- evaluation


def split_held_out(labels: list[str], test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split; categories with fewer than 3 examples stay in training."""
    rng = np.random.default_rng(seed)
    labels_arr = np.array(labels, dtype=object)
    train, test = [], []
    for label in sorted(set(labels)):
        idx = np.flatnonzero(labels_arr == label)
        rng.shuffle(idx)
        k = int(round(len(idx) * test_share)) if len(idx) >= 3 else 0
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.array(sorted(train), dtype=int), np.array(sorted(test), dtype=int)


def scores(truth: list[str], predicted: list[str]) -> dict:
    """Accuracy, macro F1 and per-category precision/recall/support."""
    per = {}
    labels = sorted(set(truth) | set(predicted))
    tp = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
    n_pred = Counter(predicted)
    n_true = Counter(truth)
    f1s = []
    for label in labels:
        precision = tp[label] / n_pred[label] if n_pred[label] else 0.0
        recall = tp[label] / n_true[label] if n_true[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if n_true[label]:
            f1s.append(f1)
            per[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                          "support": n_true[label]}
    accuracy = sum(tp.values()) / len(truth) if truth else 0.0
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)) if f1s else 0.0, "per_category": per}


# --------------------------------------------------------------------------- the active model


_cache_lock = threading.Lock()
_cache: dict = {"version": None, "model": None}


def active_model() -> tuple[int | None, TextClassifier | None]:
    """The active model, loaded once per process and reloaded when another
    version is activated (a cheap query per call)."""
    from .models import ClassifierModel

    version = ClassifierModel.objects.filter(active=True).values_list("version", flat=True).first()
    if version is None:
        return None, None
    if _cache["version"] != version:
        with _cache_lock:
            if _cache["version"] != version:
                blob = ClassifierModel.objects.get(version=version).blob
                _cache["model"] = TextClassifier.loads(blob)
                _cache["version"] = version
    return version, _cache["model"]


@dataclass
class TrainingResult:
    record: object
    metrics: dict
    n_examples: int


def train_and_store(texts: list[str], labels: list[str], weights=None, *, by="system", test_share: float = 0.2,
                    seed: int = 0, activate: bool = True, note: str = "", C: float = 20.0) -> TrainingResult:
    """Evaluate on a held-out split, refit on everything, store as the next version."""
    from .models import ClassifierModel

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(set(labels)) < 2:
        raise ValueError("need examples of at least two categories")
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=float)
    train_idx, test_idx = split_held_out(labels, test_share, seed)
    if len(test_idx):
        held = TextClassifier.fit([texts[i] for i in train_idx], [labels[i] for i in train_idx], w[train_idx], C=C)
        predicted, _ = held.predict_codes([texts[i] for i in test_idx])
        metrics = scores([labels[i] for i in test_idx], predicted)
    else:
        metrics = {"accuracy": 0.0, "macro_f1": 0.0, "per_category": {}}
    model = TextClassifier.fit(texts, labels, w, C=C)
    with transaction.atomic():
        last = ClassifierModel.objects.select_for_update().aggregate(v=Max("version"))["v"] or 0
        if activate:
            ClassifierModel.objects.filter(active=True).update(active=False)
        rec = ClassifierModel.objects.create(
            version=last + 1, created_at=now(), trained_by=str(by), active=activate,
            n_train=len(train_idx), n_test=len(test_idx), accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
            per_category=metrics["per_category"],
            params={"features": "char 1-3 gram tf-idf", "model": "multinomial logistic regression", "C": C,
                    "test_share": test_share, "seed": seed, "categories": len(model.codes),
                    "vocabulary": int(len(model.features.vocab))},
            data_note=note[:300], blob=model.dumps(),
        )
        from chengyun.audit.services import record

        record("classifier.train", actor=by if not isinstance(by, str) else by, obj=rec, data={
            "version": rec.version, "accuracy": round(rec.accuracy, 4), "macro_f1": round(rec.macro_f1, 4),
            "n_train": rec.n_train, "n_test": rec.n_test, "active": activate,
        })
    return TrainingResult(rec, metrics, len(texts))


@transaction.atomic
def activate_version(version: int, *, by="system"):
    from chengyun.audit.services import record

    from .models import ClassifierModel

    target = ClassifierModel.objects.select_for_update().filter(version=version).first()
    if target is None:
        raise ValueError(f"no classifier model version {version}")
    ClassifierModel.objects.filter(active=True).exclude(pk=target.pk).update(active=False)
    ClassifierModel.objects.filter(pk=target.pk).update(active=True)
    record("classifier.activate", actor=by, obj=target, data={"version": version})
    return target
