"""Is a new report the same problem as an open case?

Candidates are open cases of the same category or a sibling category (same
parent), within the category's radius and time window. Each gets a score in
[0, 1] from three parts, all stored with the decision so staff can see why:

* distance: 1 at the same spot, 0 at the radius;
* time: 1 for a case opened just now, 0 at the end of the window (a case
  reopened, the problem back again, counts from its reopening: ``active_since``);
* text: cosine similarity of the two texts' character n-gram TF-IDF vectors.

``score = category_factor * (0.45 text + 0.35 distance + 0.20 time)`` where the
factor is 1 for the same category and 0.8 for a sibling or for an open case
nobody has classified yet (the classifier was unsure and no one has chosen its
category: without it, the same words sent twice while the classifier is
unsure would make two cases; radius and window are the new report's). A case of
another category counts only when the words are alike: text similarity at
least ``RELATED_MIN_TEXT`` (0.3), compared, so a street-light report at the spot of
a fresh manhole-cover case is not a duplicate question. At or above
``DUPLICATE_ATTACH_SCORE`` the report is attached to the case; at or above
``DUPLICATE_ASK_SCORE`` a dispatcher is asked; below, it is a new case.

A report without a point (a hotline call, a web report with only an
address) is matched by place instead: the candidates are the open cases of
those categories and window with the same address, or in the same area when
the address was placed at street level or finer: in it (a pinned case lies in
a grid of the street the call names) or in an area that holds it down to the
street. ``place`` takes the distance's weight: 1 for the same address; for
the same area only, as close as two places in that area (the coarser of the
report's and the case's) usually are to the category's radius:
``1 - spread / radius``, at least 0, where the spread is half the side of a
square of the area's size (``area_spread_m``). A no-water call (radius 1,500 m)
in 南京东路街道 (2.1 km², spread 719 m) so gets 0.52 for the street; a
street-light call (50 m) gets 0: the street says nothing about which lamp.
Where the area counts, words alike enough attach a call, as two reports
within the radius would (the no-water call with text similarity 0.75 or
more: 0.45 × 0.75 + 0.35 × 0.52 + 0.20 = 0.72); where it counts nothing,
text and time can at most make a dispatcher ask (0.45 + 0.20 = 0.65).

Texts in different languages (an English report beside a Chinese case)
share no n-grams, so their similarity says nothing. A text is Chinese when
it has at least three times as many Chinese characters as Latin words (an English
report that names its street in Chinese, "peeling asphalt on 浦东南路", is
English; "楼下KTV每晚唱到凌晨" is Chinese). Their text is not compared: the
score is the other parts with their weights scaled up to sum to 1
(``text_compared`` False in the explanation), and such a match can at most
make a dispatcher ask, never attach a report by itself. So an English report
at the spot of a fresh Chinese case of the same category goes to a
dispatcher instead of becoming a case of its own unasked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Func, Q, Value

from chengyun.cases.models import Case
from chengyun.cases.workflow import OPEN_STATUSES
from chengyun.taxonomy.models import Category

from .classifier import active_model
from .geo import box, distance_m
from .textfeatures import CharNgramTfidf

WEIGHTS = {"text": 0.45, "distance": 0.35, "time": 0.20}
PLACE_WEIGHTS = {"text": 0.45, "place": 0.35, "time": 0.20}  # without a point (see above)
PLACE_DEPTH = 2  # street level: an area this deep or deeper is narrow enough to match in
RELATED_MIN_TEXT = 0.3  # a sibling or unclassified case counts only with words this alike (see the module)
NOT_CHECKED_PLACE = "no point, and no address or area finer than a district: not checked"
SAID_BY_STAFF = "attached by staff: the same problem"  # the hotline operator chose the case


def reason_text(reason: str) -> str:
    """Why the pipeline did not look for duplicates (stored as a fixed English key), in
    the reader's language."""
    from django.utils.translation import gettext as _

    return {
        "no category or no point: not checked": _("not checked: no category or no position"),
        "closed on the spot: not checked": _("not checked: closed on the spot"),
        "closed in the sending system: not checked": _("not checked: closed in the sending system"),
        NOT_CHECKED_PLACE: _("not checked: no position, and no address or area finer than a district"),
        SAID_BY_STAFF: _("attached by staff, who said it is the same problem"),
    }.get(reason, reason)
SIBLING_FACTOR = 0.8
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile("[A-Za-z]{2,}")
UNCLASSIFIED_FACTOR = 0.8  # an open case without a category, as a candidate of any category
MAX_CANDIDATES = 200


@dataclass
class Match:
    case: Case | None
    score: float
    outcome: str  # "attach", "ask" or "new"
    explanation: dict


def script_of(text: str) -> str:
    """"zh" for a text mostly in Chinese (at least three Chinese characters per Latin
    word), "latin" for one mostly in Latin letters, "" for neither (digits and
    signs alone: comparable with anything). See the module."""
    # Every report and case is asked (the batch pipeline too): counting only where it
    # matters is five times faster (0.7 µs, not 3 µs, a Chinese call).
    if text.isascii():
        return "latin" if _LATIN_WORD.search(text) else ""
    words = len(_LATIN_WORD.findall(text))
    if not words:
        return "zh" if _CJK.search(text) else ""
    return "zh" if len(_CJK.findall(text)) >= 3 * words else "latin"


def comparable(a: str, b: str) -> bool:
    """Whether texts of scripts ``a`` and ``b`` (:func:`script_of`) can be compared."""
    return not (a and b and a != b)


def area_spread_m(area_id: int) -> float:
    """How far apart two places in an area usually are: half the side of a square
    of its size, in metres (cached per locator)."""
    from chengyun.areas.locator import get_locator

    loc = get_locator()
    spreads = loc.__dict__.setdefault("_spread_m", {})
    spread = spreads.get(area_id)
    if spread is None:
        geom = loc.geoms[loc.index_of_id[area_id]]
        metres_per_degree = 111_320.0
        size = geom.area * metres_per_degree**2 * math.cos(math.radians(geom.centroid.y))
        spread = spreads[area_id] = 0.5 * math.sqrt(size)
    return spread


def place_closeness(same_address: bool, area_id: int | None, case_area_id: int | None,
                    radius_m: float) -> tuple[float, float | None]:
    """The place part of a match without a point, and the spread it was made with
    (None for the same address): 1 for the same address; for the same area only,
    ``1 - spread / radius`` of the coarser of the two areas (see the module)."""
    if same_address or area_id is None or case_area_id is None:
        return (1.0 if same_address else 0.0), None
    from chengyun.areas.locator import get_locator

    by_id = get_locator().by_id
    mine, theirs = by_id.get(area_id), by_id.get(case_area_id)
    coarser = area_id if theirs is None or (mine is not None and mine.depth <= theirs.depth) else case_area_id
    spread = area_spread_m(coarser)
    return (max(0.0, 1.0 - spread / radius_m) if radius_m else 0.0), spread


def related_counts(factor: float, text: float, compared: bool) -> bool:
    """Whether a candidate of another category (or none) counts: only with words
    alike, compared (see the module); one of the same category always does."""
    return factor >= 1.0 or (compared and text >= RELATED_MIN_TEXT)


def scored(parts: dict, weights: dict, factor: float, *, compared: bool) -> float:
    """A candidate's score from its parts. Without a text comparison the other
    parts' weights are scaled up to sum to 1 (see the module)."""
    if compared:
        return factor * sum(weights[k] * v for k, v in parts.items())
    rest = 1.0 - weights["text"]
    return factor * sum(weights[k] * v for k, v in parts.items() if k != "text") / rest


def scaled_weights(weights: dict) -> dict:
    """The weights a score without a text comparison was made with (:func:`scored`):
    the others', scaled up to sum to 1; stored in its explanation."""
    rest = 1.0 - weights["text"]
    return {k: round(w / rest, 4) for k, w in weights.items() if k != "text"}


def outcome_of(score: float, compared: bool, attach_at: float, ask_at: float) -> str:
    """"attach", "ask" or "new"; a match whose texts were not compared at most asks."""
    if score >= attach_at and compared:
        return "attach"
    return "ask" if score >= ask_at else "new"


def rank(score: float, compared: bool, attach_at: float, ask_at: float) -> tuple:
    """Which of two candidates is the better match: one that attaches beats one
    that asks, whatever their scores; of those that ask, one whose text was
    compared beats one in another language (whose place and time alone may
    score higher); then the higher score."""
    return (compared and score >= attach_at, compared and score >= ask_at, score)


def active_since(created_at, waiting_since, at=None):
    """When an open case began to be the problem it is now: when it was made, or
    when it came back to the queue (reopened: the problem is back; returned or
    recalled: still open, sent on again) if later, and not after ``at``. The
    duplicate window and the time part count from then."""
    if waiting_since is not None and waiting_since > created_at and (at is None or waiting_since <= at):
        return waiting_since
    return created_at


def _in_window(qs, cut, at) -> list:
    """The open cases of ``qs`` made in [cut, at] or back in the queue in it, the
    latest first, at most MAX_CANDIDATES. Two queries, each on its index ((category,
    created_at) and the partial one on waiting_since): one with an OR would walk the
    category's whole history."""
    made = list(qs.filter(created_at__gte=cut, created_at__lte=at).order_by("-created_at")[:MAX_CANDIDATES])
    seen = {c.pk for c in made}
    back = [c for c in qs.filter(waiting_since__gte=cut, waiting_since__lte=at, created_at__lt=cut)
            .order_by("-waiting_since")[:MAX_CANDIDATES] if c.pk not in seen]
    both = made + back
    both.sort(key=lambda c: active_since(c.created_at, c.waiting_since, at), reverse=True)
    return both[:MAX_CANDIDATES]


def category_factor(related: dict[int, float], category_id: int | None) -> float:
    return UNCLASSIFIED_FACTOR if category_id is None else related[category_id]


def _candidate_categories(related: dict[int, float]) -> Q:
    """The categories a report's candidates may have: its own, its siblings, none yet."""
    return Q(category_id__in=list(related)) | Q(category_id__isnull=True)


def related_categories(category: Category) -> dict[int, float]:
    related = {category.pk: 1.0}
    if category.parent_id:
        for pk in Category.objects.filter(parent_id=category.parent_id).exclude(pk=category.pk).values_list("pk", flat=True):
            related[pk] = SIBLING_FACTOR
    return related


def text_similarity(text: str, others: list[str]) -> list[float]:
    _, model = active_model()
    if model is not None:
        return model.similarity(text, others)
    # No trained model yet: the same features, fitted on these texts alone.
    features = CharNgramTfidf(min_df=1).fit([text, *others])
    X = features.transform([text, *others])
    return [float(v) for v in (X[1:] @ X[0].T).toarray().ravel()]


def find_duplicate(*, category: Category | None, lon, lat, at, text: str, exclude_case_id=None,
                   area=None, address: str = "") -> Match:
    """The best open case this report may repeat (see the module). ``area``
    (an ``AreaInfo`` or ``Area``) and ``address`` are used when there is no point."""
    attach_at = settings.DUPLICATE_ATTACH_SCORE
    ask_at = settings.DUPLICATE_ASK_SCORE
    if category is not None and (lon is None or lat is None):
        return _by_place(category=category, area=area, address=address, at=at, text=text,
                         exclude_case_id=exclude_case_id)
    if category is None or lon is None or lat is None:
        return Match(None, 0.0, "new", {"reason": "no category or no point: not checked"})
    radius = category.duplicate_radius_m
    window = timedelta(hours=category.duplicate_window_hours)
    related = related_categories(category)
    min_lon, min_lat, max_lon, max_lat = box(lon, lat, radius)
    qs = _in_window(
        Case.objects.filter(
            _candidate_categories(related), status__in=OPEN_STATUSES,
            lon__gte=min_lon, lon__lte=max_lon, lat__gte=min_lat, lat__lte=max_lat,
        ).only("id", "number", "title", "description", "lon", "lat", "created_at", "waiting_since", "category_id",
               "status"),
        at - window, at)
    near = []
    for c in qs:
        if c.pk == exclude_case_id:
            continue
        d = distance_m(lon, lat, c.lon, c.lat)
        if d <= radius:
            near.append((c, d))
    base = {"radius_m": radius, "window_hours": category.duplicate_window_hours, "candidates": len(near),
            "attach_at": attach_at, "ask_at": ask_at, "weights": WEIGHTS}
    if not near:
        return Match(None, 0.0, "new", base)
    texts = [f"{c.title} {c.description}" for c, _ in near]
    sims, compared = _similarities(text, texts)
    best = None
    for (c, d), sim, same_language in zip(near, sims, compared, strict=True):
        age = max(0.0, (at - active_since(c.created_at, c.waiting_since, at)).total_seconds())
        parts = {
            "text": max(0.0, min(1.0, sim)),
            "distance": 1.0 - d / radius if radius else 1.0,
            "time": max(0.0, 1.0 - age / window.total_seconds()),
        }
        factor = category_factor(related, c.category_id)
        if not related_counts(factor, parts["text"], same_language):
            continue
        score = scored(parts, WEIGHTS, factor, compared=same_language)
        key = rank(score, same_language, attach_at, ask_at)
        if best is None or key > best[0]:
            best = (key, score, c, {**_rounded(parts, same_language), "distance_m": round(d, 1),
                                    "category_factor": factor})
    return _best_match(best, base, attach_at, ask_at)


def _similarities(text: str, others: list[str]) -> tuple[list[float], list[bool]]:
    """The text similarity to each of ``others`` and whether it was compared at all
    (not across languages: see the module)."""
    mine = script_of(text)
    compared = [comparable(mine, script_of(o)) for o in others]
    sims = [0.0] * len(others)
    wanted = [o for o, c in zip(others, compared, strict=True) if c]
    if wanted:
        got = iter(text_similarity(text, wanted))
        sims = [next(got) if c else 0.0 for c in compared]
    return sims, compared


def _rounded(parts: dict, compared: bool) -> dict:
    out = {k: round(v, 4) for k, v in parts.items()}
    if not compared:
        out.update(text=None, text_compared=False)  # text stays first, text_compared after the parts
    return out


def _best_match(best: tuple | None, base: dict, attach_at: float, ask_at: float) -> Match:
    if best is None:  # none counted (other categories with other words)
        return Match(None, 0.0, "new", base)
    (_key, score, case, parts) = best
    compared = parts.get("text_compared", True)
    outcome = outcome_of(score, compared, attach_at, ask_at)
    if not compared:
        base = {**base, "weights": scaled_weights(base["weights"])}
    return Match(case if outcome != "new" else None, score, outcome,
                 {**base, "best_case": case.number, "score": round(score, 4), **parts})


ADDRESS_SPACES = (" ", "\u3000", "\t", "\n", "\r")  # left out when addresses are compared


def address_key(address: str | None) -> str:
    """An address as duplicates are matched by: without spaces (ASCII and
    ideographic), tabs and line breaks."""
    key = address or ""
    for ch in ADDRESS_SPACES:
        key = key.replace(ch, "")
    return key


def _address_key_sql():
    """:func:`address_key` of ``Case.address``, in SQL (REPLACE: SQLite and PostgreSQL)."""
    expr = F("address")
    for ch in ADDRESS_SPACES:
        expr = Func(expr, Value(ch), Value(""), function="REPLACE")
    return expr


def place_of(area_id: int | None, address: str | None):
    """Where a report without a point is matched: (its area if a street or
    finer, else None; its address with spaces collapsed), or None when
    neither says enough (no address, and no area or only a district)."""
    from chengyun.areas.locator import get_locator

    info = get_locator().by_id.get(area_id) if area_id is not None else None
    area = info if info is not None and info.depth >= PLACE_DEPTH else None
    address = " ".join((address or "").split())
    if area is None and not address_key(address):
        return None
    return area, address


def area_places(area) -> tuple[list[int], list[int]]:
    """Where a case may lie to be in the same place as a report placed in ``area``
    (street or finer): (ids of ``area`` and the areas above it down to the street,
    the top-down path of ``area``'s ids)."""
    from chengyun.areas.locator import get_locator

    chain = get_locator().chain(area)
    return [a.id for a in chain if a.depth >= PLACE_DEPTH], [a.id for a in chain]


def area_q(area) -> Q:
    """Cases in ``area`` or below it, or in an area above it down to the street."""
    holders, path = area_places(area)
    return Q(area_path__startswith="/" + "/".join(map(str, path)) + "/") | Q(area_id__in=holders)


def place_explanation(*, area, address: str, window_hours: int, candidates: int, attach_at: float,
                      ask_at: float) -> dict:
    """The ``duplicate_explanation`` of a match by place, before its best candidate."""
    return {"by": "place", "area": area.code if area is not None else None, "address": address or None,
            "window_hours": window_hours, "candidates": candidates, "attach_at": attach_at, "ask_at": ask_at,
            "weights": PLACE_WEIGHTS}


def _by_place(*, category: Category, area, address: str, at, text: str, exclude_case_id=None) -> Match:
    """:func:`find_duplicate` for a report without a point (see the module)."""
    attach_at = settings.DUPLICATE_ATTACH_SCORE
    ask_at = settings.DUPLICATE_ASK_SCORE
    place = place_of(area.id if area is not None else None, address)
    if place is None:
        return Match(None, 0.0, "new", {"reason": NOT_CHECKED_PLACE})
    area, address = place
    window = timedelta(hours=category.duplicate_window_hours)
    related = related_categories(category)
    key = address_key(address)
    where = Q(address_key=key) if key else Q()
    if area is not None:
        around = area_q(area)
        where = where | around if key else around
    near = _in_window(
        Case.objects.filter(_candidate_categories(related), status__in=OPEN_STATUSES)
        .annotate(address_key=_address_key_sql()).filter(where)
        .exclude(pk=exclude_case_id or 0)
        .only("id", "number", "title", "description", "address", "area_id", "created_at", "waiting_since",
              "category_id", "status"),
        at - window, at)
    base = place_explanation(area=area, address=address, window_hours=category.duplicate_window_hours,
                             candidates=len(near), attach_at=attach_at, ask_at=ask_at)
    if not near:
        return Match(None, 0.0, "new", base)
    sims, compared = _similarities(text, [f"{c.title} {c.description}" for c in near])
    best = None
    for c, sim, same_language in zip(near, sims, compared, strict=True):
        age = max(0.0, (at - active_since(c.created_at, c.waiting_since, at)).total_seconds())
        same_address = bool(key) and address_key(c.address) == key
        place, spread = place_closeness(same_address, area.id if area is not None else None, c.area_id,
                                        category.duplicate_radius_m)
        parts = {
            "text": max(0.0, min(1.0, sim)),
            "place": place,
            "time": max(0.0, 1.0 - age / window.total_seconds()),
        }
        factor = category_factor(related, c.category_id)
        if not related_counts(factor, parts["text"], same_language):
            continue
        score = scored(parts, PLACE_WEIGHTS, factor, compared=same_language)
        order = rank(score, same_language, attach_at, ask_at)
        if best is None or order > best[0]:
            best = (order, score, c, {**_rounded(parts, same_language), "category_factor": factor,
                                     **place_by(same_address, spread)})
    return _best_match(best, base, attach_at, ask_at)


def place_by(same_address: bool, spread: float | None) -> dict:
    """How a match without a point was placed, for its explanation."""
    if same_address:
        return {"place_by": "address"}
    return {"place_by": "area", "spread_m": round(spread) if spread is not None else None}
