"""Texts of generated demo reports, and the demo's first classifier.

Report texts are composed from hand-written phrasings per category
(``pack/report_phrases.json``; generated, not real reports), a place, and an
urging phrase; about one in ten is in English. About half are framed as a
12345 call is written down: who calls, since when, what it does to people,
what they ask for ("我要投诉", "请尽快处理"): words that say nothing of the
category and are spread over all of them, as in real call records. Trained
without them, the calibrated model took such words for evidence ("我要举报"
was 82 % 报刊亭, for its 报; docs/intake.md, "Confidence of long texts:
calibration"). The demo's first classifier is
trained on such composed texts, so the demo classifies from the first report;
after the history is generated it is retrained from the generated cases (as a
city would from its own closed cases), and the first model stays for rollback.
Accuracy figures of these models describe texts from the same phrase pool and
are not a measure of accuracy on real reports.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from chengyun.taxonomy.models import Category

from . import detached
from .loader import PACK

PLACES = ["小区门口", "十字路口", "菜场旁边", "公交站旁", "学校门口", "弄堂里", "地铁站出口", "商场附近", "河道边", "停车场",
          "", "", ""]
URGES = ["请尽快处理。", "已经好几天了。", "影响居民出行。", "晚上特别明显。", "希望有关部门管一管。", "多次反映未解决。", "", ""]
PLACES_EN = ["near the metro exit", "outside the school gate", "at the crossroads", "by the bus stop", "in our lane", ""]
URGES_EN = ["Please fix it soon.", "It has been like this for days.", "It is dangerous at night.", ""]
ENGLISH_SHARE = 0.1
CALL_SHARE = 0.5  # texts framed as a written-down call (see the module)
# The parts of a call that say nothing of its category, each sometimes left out.
CALLERS = ["市民来电反映：", "来电人称，", "您好，我是附近的居民，", "您好，我想反映个情况，", "网友留言：", "市民反映，",
           "我是这里的老住户，", "来电人表示，", "我家就住在这附近，", "我要投诉，", "我要举报，", "有个问题想反映一下，",
           "来电投诉：", "市民举报：", "我要反映问题：", "我想投诉一下，", ""]
SINCE = ["最近一段时间", "从上周开始", "今天早上发现", "这两天", "已经一个多星期了，", "前几天开始", "", ""]
EFFECTS = ["给周边居民生活带来很大不便。", "老人小孩经过很不安全。", "大家意见都很大。", "存在安全隐患。",
           "我们反映过好几次了。", "来来往往的人很多。", ""]
ASKS = ["麻烦你们尽快派人来看一下，谢谢。", "希望相关部门尽快处理。", "请尽快处理。", "要求有关部门给个答复。",
        "之前打过电话还没解决，请督促一下。", "希望能尽快解决，谢谢！", "问题很严重，请帮忙处理。", "请相关部门核实处理。"]
CALLERS_EN = ["Hello, I'd like to report a problem.", "Hi, I live nearby.", "Good morning.", "Caller says:",
              "I am calling about our neighbourhood.", "I want to make a complaint.", "I'd like to complain.", ""]
SINCE_EN = ["It started last week.", "It has been like this since Monday.", "I noticed it this morning.", "", ""]
EFFECTS_EN = ["It is a real nuisance for everyone living here.", "Old people and children pass here every day.",
              "We have reported it several times.", ""]
ASKS_EN = ["Could someone please come and look at it? Thank you.", "Please deal with it as soon as possible.",
           "I would like a reply, please.", "Thanks.", "Please help."]
GENERATED_MARK = "（演示用生成数据）"


@lru_cache(maxsize=1)
def phrases() -> dict[str, dict[str, list[str]]]:
    path = PACK / "report_phrases.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["categories"]


def compose(cat: Category, rng: random.Random, *, street_name: str = "",
            call_share: float = CALL_SHARE) -> tuple[str, str, str]:
    """(title, description, address) of one generated report; ``call_share``
    of them framed as a written-down call (0: none, and the same random draws
    as before calls were framed, which ``bench/intake.py`` relies on)."""
    mine = phrases().get(cat.code, {})
    english = rng.random() < ENGLISH_SHARE and (mine.get("en") or cat.keywords_en)
    if english:
        return _english(rng.choice(mine.get("en") or [f"{k}" for k in cat.keywords_en]), rng, street_name,
                        call_share=call_share)
    phrase = rng.choice(mine.get("zh") or cat.keywords_zh or [cat.name])
    place = rng.choice(PLACES)
    title = phrase.split("，")[0].split("。")[0][:40]
    if call_share and rng.random() < call_share:
        text = (f"{rng.choice(CALLERS)}{street_name}{place}{rng.choice(SINCE)}{phrase.rstrip('。')}，"
                f"{rng.choice(EFFECTS)}{rng.choice(ASKS)}")
    else:
        text = f"{street_name}{place}{phrase.rstrip('。')}。{rng.choice(URGES)}"
    return title, f"{text}{GENERATED_MARK}", f"上海市{street_name}{place}"


def _english(phrase: str, rng: random.Random, street_name: str = "", *,
             call_share: float = CALL_SHARE) -> tuple[str, str, str]:
    place = rng.choice(PLACES_EN)
    said = " ".join(x for x in (phrase.rstrip("."), place) if x) + "."
    if call_share and rng.random() < call_share:
        parts = [rng.choice(CALLERS_EN), said, rng.choice(SINCE_EN), rng.choice(EFFECTS_EN), rng.choice(ASKS_EN)]
    else:
        parts = [said, rng.choice(URGES_EN)]
    text = " ".join(x for x in parts if x)
    return (phrase[:60], f"{text} (generated demo data)", f"{street_name}, Shanghai" if street_name else "Shanghai")


def training_corpus(seed: int = 7, per_category: int = 40, english_each: int = 2) -> tuple[list[str], list[str]]:
    """Composed texts for every leaf category that has phrases or keywords,
    and each English phrasing ``english_each`` times more: one report in ten
    is in English, too few (about four a category) for the model to know the
    English words of a category; with these it sees every phrasing."""
    rng = random.Random(seed)
    texts, labels = [], []
    for cat in Category.objects.reportable().order_by("code"):
        extra = [_english(p, rng) for p in phrases().get(cat.code, {}).get("en", []) for _ in range(english_each)]
        for title, description, _address in [compose(cat, rng) for _ in range(per_category)] + extra:
            texts.append(f"{title}\n{description}")
            labels.append(cat.code)
    return texts, labels


def train_demo_model(log=print) -> None:
    from chengyun.intake.classifier import taxonomy_examples, train_and_store
    from chengyun.intake.models import ClassifierModel

    if ClassifierModel.objects.exists():
        log("  classifier: a model is already stored, none trained")
        return
    texts, labels = training_corpus()
    result = train_and_store(texts, labels, by="load-demo", test_share=0.2, seed=0, extra=taxonomy_examples(),
                             note="demo pack phrasings (generated texts) and the categories' keywords")
    log(f"  classifier: v{result.record.version} from {len(texts)} generated texts, "
        f"held-out accuracy {result.metrics['accuracy']:.1%}, macro F1 {result.metrics['macro_f1']:.1%}")


@dataclass
class Retraining:
    """The demo's second model, trained from the generated cases. Training
    takes a while and needs no database until it stores the model, so
    :func:`start_retraining` may run it in a separate process (the other core)
    while the sensors load; :meth:`finish` waits for it, activates the new
    version if it scores at least as well as the first on the same held-out
    cases, and reports."""

    texts: list[str]
    info: dict
    future: Future | None = None
    pool: ProcessPoolExecutor | None = None
    result: tuple[int, float, float] | None = None  # version, its accuracy, v1's on the same cases

    def finish(self, log=print) -> None:
        from chengyun.intake.classifier import activate_version

        if self.future is not None:
            try:
                self.result = self.future.result()
            finally:
                self.pool.shutdown()
        version, accuracy, first = self.result
        better = accuracy >= first
        if better:
            activate_version(version, by="load-demo")
        log(f"  classifier: v{version} retrained from {len(self.texts)} generated cases, "
            f"held-out accuracy {accuracy:.1%} (v1 on the same cases {first:.1%}); "
            + ("active, v1 kept for rollback" if better else "kept inactive"))


def start_retraining(*, background: bool = False) -> Retraining | None:
    """Retrain from the generated cases (as a city would from its own closed
    cases), unless the demo's first model is not the only one or there are
    too few cases. The examples are read now, so what the model learns does
    not depend on what happens while it trains. ``background``: train in a
    separate process; its activation still waits for :meth:`Retraining.finish`."""
    from django.db import connection

    from chengyun.intake.classifier import taxonomy_examples
    from chengyun.intake.models import ClassifierModel
    from chengyun.intake.services import training_examples

    if ClassifierModel.objects.count() != 1:
        return None
    texts, labels, weights, info = training_examples()
    if len(set(labels)) < 2 or len(texts) < 200:
        return None
    extra = taxonomy_examples()
    job = Retraining(texts, info)
    note = f"generated demo cases ({info['cases']} cases, {info['corrected']} corrected)"
    if background and _shareable(connection):
        job.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=detached.setup, initargs=(connection.settings_dict["NAME"],))
        job.future = job.pool.submit(_train, texts, labels, weights, note, extra)
    else:
        job.result = _train(texts, labels, weights, note, extra)
    return job


def _shareable(connection) -> bool:
    """Whether another process can work on this database: it sees only
    committed rows, and nothing of an in-memory SQLite database."""
    in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()
    return not in_memory and not connection.in_atomic_block


def _train(texts: list[str], labels: list[str], weights: list[float], note: str,
           extra: tuple[list[str], list[str]]) -> tuple[int, float, float]:
    """Train and store (inactive); -> (version, held-out accuracy).

    With one BLAS thread: it runs beside the sensors' loading, which needs
    the other core (on a 2-core machine a second BLAS thread did not make
    the fits faster but doubled their CPU time, docs/performance.md)."""
    from threadpoolctl import threadpool_limits

    from chengyun.intake.classifier import active_model, train_and_store

    in_use = active_model()
    with threadpool_limits(1):
        result = train_and_store(texts, labels, weights, by="load-demo", test_share=0.2, seed=0, activate=False,
                                 extra=extra, note=note, rival=in_use if in_use[0] is not None else None)
    # Nothing in use, or nothing held out to compare on: the new version goes in.
    rival = result.metrics.get("rival", {}).get("accuracy", 0.0)
    return result.record.version, result.metrics["accuracy"], rival

