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
import weakref
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
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


_texts_lock = threading.Lock()
_texts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _term_texts(features: CharNgramTfidf) -> dict[int, str]:
    """Feature index -> its n-gram as shown in explanations (stripped, a lone
    space as "␣"), filled as explanations need them; one per feature set."""
    entry = _texts.get(features)
    if entry is None or entry[0] is not features.vocab:
        with _texts_lock:
            entry = _texts.get(features)
            if entry is None or entry[0] is not features.vocab:
                entry = _texts[features] = (features.vocab, {})
    return entry[1]


def _round4(values: np.ndarray) -> list[float]:
    """``[round(float(v), 4) for v in values]``, with array operations.

    For |v| <= 1000, v * 1e4 is off by less than 2e-9 from the exact product,
    so unless its fraction is within 1e-6 of a half, rint() picks the same
    integer k as the exact decimal rounding, and k / 1e4 (one correctly
    rounded division) is the double nearest k/10^4: what round() returns.
    The other values (near a half, large, not finite) go through round()."""
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scaled = x * 1e4
        out = (np.rint(scaled) / 1e4).tolist()
        safe = (np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6) & (np.abs(x) <= 1000.0)
    for j in np.flatnonzero(~safe).tolist():
        out[j] = round(float(x[j]), 4)
    return out


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

    def scaled(self, temperature: float) -> TextClassifier:
        """This model with its scores divided by ``temperature`` (see :func:`calibrate`):
        the same ranking, other confidences."""
        return TextClassifier(self.features, self.codes, self.coef / temperature, self.intercept / temperature)

    # ------------------------------------------------------------ predicting
    def scores(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef.T) + self.intercept

    def probabilities(self, X) -> np.ndarray:
        return _softmax(self.scores(X))

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
        code, conf, alternatives = self._ranked(p, order, n_alternatives)
        return Prediction(code=code, confidence=conf, alternatives=alternatives,
                          terms=self._row_terms(X, i, best, n_terms, _term_texts(self.features)))

    def explain_rows(self, X, P: np.ndarray, n_terms: int = 6, n_alternatives: int = 3) -> list[Prediction]:
        """:meth:`explain_row` for every row of the batch at once (equal results)."""
        top_codes, probs, words, weights, ends = self._explain_batch(X, P, n_terms, n_alternatives)
        probs, weights = probs.tolist(), weights.tolist()
        terms = list(zip(words, weights, strict=True))
        out, start = [], 0
        for c, q, end in zip(top_codes, probs, ends, strict=True):
            out.append(Prediction(code=c[0], confidence=q[0], alternatives=list(zip(c[1:], q[1:], strict=True)),
                                  terms=terms[start:end]))
            start = end
        return out

    def explanations(self, X, P: np.ndarray, version: int | None, n_terms: int = 6,
                     n_alternatives: int = 3) -> list[dict]:
        """``explain_row(X, P, i).explanation(version)`` for every row ``i``
        (equal, down to the rounding), at a fraction of the cost."""
        top_codes, probs, words, weights, ends = self._explain_batch(X, P, n_terms, n_alternatives)
        m = probs.shape[1]
        probs = _round4(probs.ravel())
        terms = [[t, w] for t, w in zip(words, _round4(weights), strict=True)]
        out, start = [], 0
        for i, (c, end) in enumerate(zip(top_codes, ends, strict=True)):
            q = probs[i * m: i * m + m]
            out.append({
                "model": version,
                "category": c[0],
                "confidence": q[0],
                "alternatives": [[a, b] for a, b in zip(c[1:], q[1:], strict=True)],
                "terms": terms[start:end],
            })
            start = end
        return out

    # The order of equal values from np.argsort is unspecified (it depends on
    # the sorting code numpy picks for the CPU), and equal contributions are
    # common (n-grams that always occur together get equal weights). So the
    # batch form sorts each row's contributions with the very call explain_row
    # makes, on an equal array; it only does the rest for the batch at once.

    def _ranked(self, p: np.ndarray, order: np.ndarray, n_alternatives: int):
        codes = self.codes
        best = int(order[0])
        return (codes[best], float(p[best]),
                [(codes[int(j)], float(p[j])) for j in order[1: 1 + n_alternatives]])

    def _row_terms(self, X, i: int, best: int, n_terms: int, texts: dict) -> list[tuple[str, float]]:
        start, end = X.indptr[i], X.indptr[i + 1]
        indices = X.indices[start:end]
        contrib = X.data[start:end] * self.coef[best, indices]
        top = np.argsort(-contrib)[:n_terms]
        out = []
        for j in top:
            if contrib[j] > 0:
                k = int(indices[j])
                t = texts.get(k)
                if t is None:
                    t = texts[k] = self.features.feature_text(k).strip() or "␣"
                out.append((t, float(contrib[j])))
        return out

    def _explain_batch(self, X, P: np.ndarray, n_terms: int, n_alternatives: int):
        """Per row of the batch: the codes best first (best + alternatives),
        their probabilities (an array), and the end of its terms in the lists
        of term texts and weights (an array) of the whole batch."""
        n = X.shape[0]
        P = np.asarray(P)
        if n == 0:
            return [], np.zeros((0, 1), P.dtype), [], np.zeros(0, np.float32), []
        codes = self.codes
        # Categories, best first: one sort for the batch; a row with equal
        # probabilities within (or at the edge of) the places shown is sorted
        # on its own, as explain_row does.
        m = min(P.shape[1], 1 + n_alternatives)
        order = np.argsort(-P, axis=1)
        ranked = np.take_along_axis(P, order[:, : m + 1], axis=1)
        order = order[:, :m].copy()
        if ranked.shape[1] > 1:
            for i in np.flatnonzero((ranked[:, 1:] == ranked[:, :-1]).any(axis=1)).tolist():
                order[i] = np.argsort(-P[i])[:m]
        best = order[:, 0]
        probs = np.take_along_axis(P, order, axis=1)
        top_codes = [[codes[j] for j in row] for row in order.tolist()]

        # Terms: every contribution of the batch in one product; per row the
        # same sort as explain_row; the positive ones of the first n_terms.
        indptr, indices = X.indptr, X.indices
        lengths = np.diff(indptr)
        contrib = X.data * self.coef[np.repeat(best, lengths), indices]
        bounds = indptr.tolist()
        chosen = [np.negative(contrib[bounds[i]: bounds[i + 1]]).argsort()[:n_terms] for i in range(n)]
        taken = np.array([len(c) for c in chosen])
        sel = np.concatenate(chosen) + np.repeat(indptr[:-1], taken)
        positive = contrib[sel] > 0
        sel = sel[positive]
        ends = np.cumsum(np.bincount(np.repeat(np.arange(n), taken)[positive], minlength=n)).tolist()
        texts = _term_texts(self.features)
        words = []
        for k in indices[sel].tolist():
            t = texts.get(k)
            if t is None:
                t = texts[k] = self.features.feature_text(k).strip() or "␣"
            words.append(t)
        return top_codes, probs, words, contrib[sel], ends

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


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


# Calibration. A multinomial logistic regression over a hundred categories
# trained on a few dozen examples each is far less sure than it is right: in
# the demo it put 60 % on held-out cases it got right 97 % of the time, and
# 10-30 % on a whole sentence from a caller that it read right. So its
# scores are divided by one number, the temperature, chosen so that the
# confidences of the held-out cases are as likely as can be (the smallest log
# loss): then "confidence 0.8" means right about 8 times in 10 on the city's
# own cases, and the threshold setting means what it says. The ranking, so
# accuracy, precision and recall, do not change.
MIN_CALIBRATION_CASES = 200  # fewer held-out cases: no calibration (temperature 1)
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(4.0), 121))  # searched; 0.25 caps overconfidence


def _temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """The temperature of the smallest log loss of ``truth`` (column indices) under ``scores``."""
    rows = np.arange(len(truth))
    best, best_loss = 1.0, np.inf
    for t in TEMPERATURES:
        z = scores / t
        z -= z.max(axis=1, keepdims=True)
        loss = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, truth]))
        if loss < best_loss:
            best, best_loss = float(t), loss
    return best


def _routed(P: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[float, float | None]:
    """(share of cases at or above ``threshold``, share of those that are right)."""
    conf, best = P.max(axis=1), P.argmax(axis=1)
    sure = conf >= threshold
    return float(sure.mean()), (float((best[sure] == truth[sure]).mean()) if sure.any() else None)


def calibrate(model: TextClassifier, texts: list[str], truth: list[str], threshold: float) -> dict:
    """The temperature for ``model`` from held-out ``texts`` and their categories,
    with what it does there: at the confidence ``threshold``, the share of cases
    routed and of those right, before and after. The after figures of each half
    use the temperature fitted on the other half, so they are not flattered by
    the fit; the temperature returned is fitted on all."""
    index = {c: i for i, c in enumerate(model.codes)}
    keep = [k for k, c in enumerate(truth) if c in index]
    if len(keep) < MIN_CALIBRATION_CASES:
        return {"temperature": 1.0, "cases": len(keep), "fitted": False}
    S = model.scores(model.features.transform([texts[k] for k in keep]))
    y = np.array([index[truth[k]] for k in keep])
    half = np.arange(len(y)) % 2 == 0
    P_cross = np.empty_like(S)
    for fit_on, apply_to in ((half, ~half), (~half, half)):
        P_cross[apply_to] = _softmax(S[apply_to] / _temperature(S[fit_on], y[fit_on]))
    before, after = _routed(_softmax(S.copy()), y, threshold), _routed(P_cross, y, threshold)
    return {"temperature": round(_temperature(S, y), 4), "cases": len(keep), "fitted": True,
            "threshold": threshold, "routed_before": round(before[0], 4),
            "right_before": None if before[1] is None else round(before[1], 4),
            "routed": round(after[0], 4), "right": None if after[1] is None else round(after[1], 4),
            "mean_confidence": round(float(P_cross.max(axis=1).mean()), 4)}


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


TAXONOMY_REPEAT = 2  # each name or keyword counts as two examples (min_df keeps its n-grams)


def taxonomy_examples() -> tuple[list[str], list[str]]:
    """The reportable categories' names and keywords (Chinese and English) as short
    examples of their category. Reports are trained on whole sentences; a person
    typing "street light broken" or "路灯坏了" writes hardly more than a keyword, and
    without these the model read such short texts poorly (in the demo, 12 of 21
    short phrasings right; with them, 21). They are added to the training side only,
    so the held-out scores still measure the city's own reports."""
    from chengyun.taxonomy.models import Category

    texts, labels = [], []
    for cat in Category.objects.reportable().order_by("code"):
        # Keywords are edited as JSON lists in the admin: anything may be in them.
        words = dict.fromkeys(str(w).strip() for w in [cat.name, cat.name_en, *(cat.keywords_zh or []),
                                                       *(cat.keywords_en or [])] if w is not None)
        for w in words:
            if w:
                texts += [w] * TAXONOMY_REPEAT
                labels += [cat.code] * TAXONOMY_REPEAT
    return texts, labels


def train_and_store(texts: list[str], labels: list[str], weights=None, *, by="system", test_share: float = 0.2,
                    seed: int = 0, activate: bool = True, note: str = "", C: float = 20.0,
                    extra: tuple[list[str], list[str]] | None = None,
                    rival: tuple[int, TextClassifier] | None = None) -> TrainingResult:
    """Evaluate on a held-out split, refit on everything, store as the next version.
    ``extra`` (texts, labels), for example :func:`taxonomy_examples`, is trained on in
    both fits and never held out. ``rival`` (version, model), the model in use, is
    scored on the same held-out examples (``metrics["rival"]``): the scores stored
    with each version come from different examples and cannot be compared."""
    from .models import ClassifierModel

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(set(labels)) < 2:
        raise ValueError("need examples of at least two categories")
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=float)
    extra_texts, extra_labels = extra or ([], [])
    w_extra = np.ones(len(extra_texts))
    train_idx, test_idx = split_held_out(labels, test_share, seed)
    if len(test_idx):
        held = TextClassifier.fit([texts[i] for i in train_idx] + extra_texts,
                                  [labels[i] for i in train_idx] + extra_labels,
                                  np.concatenate([w[train_idx], w_extra]), C=C)
        held_texts, truth = [texts[i] for i in test_idx], [labels[i] for i in test_idx]
        predicted, _ = held.predict_codes(held_texts)
        metrics = scores(truth, predicted)
        metrics["calibration"] = calibrate(held, held_texts, truth, settings.INTAKE_CONFIDENCE_THRESHOLD)
        if rival is not None:
            theirs = scores(truth, rival[1].predict_codes(held_texts)[0])
            metrics["rival"] = {"version": rival[0], "accuracy": theirs["accuracy"], "macro_f1": theirs["macro_f1"]}
    else:
        metrics = {"accuracy": 0.0, "macro_f1": 0.0, "per_category": {},
                   "calibration": {"temperature": 1.0, "cases": 0, "fitted": False}}
    # The temperature was fitted on the held-out fit; the refit on everything keeps
    # its balance of data and regularisation (scikit-learn's loss sums over the
    # examples: with a fifth more of them, C in proportion less), so its scores have
    # the scale the temperature was fitted to, and the figures printed hold for it.
    temperature = metrics["calibration"]["temperature"]
    final_C = C
    if metrics["calibration"]["fitted"]:
        final_C = C * (float(w[train_idx].sum()) + len(extra_texts)) / (float(w.sum()) + len(extra_texts))
    model = TextClassifier.fit(list(texts) + extra_texts, list(labels) + extra_labels,
                               np.concatenate([w, w_extra]), C=final_C).scaled(temperature)
    with transaction.atomic():
        last = ClassifierModel.objects.select_for_update().aggregate(v=Max("version"))["v"] or 0
        if activate:
            ClassifierModel.objects.filter(active=True).update(active=False)
        rec = ClassifierModel.objects.create(
            version=last + 1, created_at=now(), trained_by=str(by), active=activate,
            n_train=len(train_idx), n_test=len(test_idx), accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
            per_category=metrics["per_category"],
            params={"features": "char 1-3 gram tf-idf", "model": "multinomial logistic regression", "C": C,
                    "C_refit": round(final_C, 4),
                    "test_share": test_share, "seed": seed, "categories": len(model.codes),
                    "extra_examples": len(extra_texts), "calibration": metrics["calibration"],
                    **({"rival_on_held_out": {k: round(v, 4) if isinstance(v, float) else v
                                              for k, v in metrics["rival"].items()}} if "rival" in metrics else {}),
                    "vocabulary": int(len(model.features.vocab))},
            data_note=note[:300], blob=model.dumps(),
        )
        from chengyun.audit.services import record

        record("classifier.train", actor=by if not isinstance(by, str) else by, obj=rec, data={
            "version": rec.version, "accuracy": round(rec.accuracy, 4), "macro_f1": round(rec.macro_f1, 4),
            "n_train": rec.n_train, "n_test": rec.n_test, "active": activate,
        })
    return TrainingResult(rec, metrics, len(texts))


def previously_active(current: int) -> int | None:
    """The version that was in use before ``current`` was put in use (from the audit
    log: versions trained active and activations), if it is still stored."""
    from chengyun.audit.models import AuditRecord

    from .models import ClassifierModel

    stored = set(ClassifierModel.objects.values_list("version", flat=True))
    events = (AuditRecord.objects.filter(action__in=("classifier.activate", "classifier.train"))
              .order_by("-pk").values_list("action", "data"))
    seen_current = False
    for action, data in events.iterator():
        if action == "classifier.train" and not data.get("active"):
            continue
        version = data.get("version")
        if version == current:
            seen_current = True
        elif seen_current and version in stored:
            return version
    return None


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
