"""Where a report is: a point, or the areas named in its address."""

from __future__ import annotations

import math
import re

from chengyun.areas.locator import AreaInfo, get_locator

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) of a square holding the circle."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    dlon = dlat / max(0.01, math.cos(math.radians(lat)))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


# A street (街道) or town is often named after its main road or an old place name:
# "南京东路街道" is where "南京东路300号" is. The name without these endings (at
# least three characters left) also places an address, when it agrees with the
# district the address names, or is the only such name in the city.
STEM_ENDINGS = ("街道办事处", "街道", "地区", "镇", "乡")
# The same for English names: "Xujiahui" is where Xujiahui Subdistrict is. An English
# stem must be a whole word of the address, and have at least three syllables, as a
# Chinese stem needs three characters: "Zhongshan" (中山街道) is in too many road
# names ("Zhongshan North Road" is not in that street), as 中山 is.
STEM_ENDINGS_EN = (" sub-district", " subdistrict", " township", " town", " street")
MIN_STEM_SYLLABLES = 3
_VOWELS = re.compile(r"[aeiouüv]+")


def _syllables(pinyin: str) -> int:
    """Syllables of a pinyin name, as its runs of vowels (xu-jia-hui: 3; zhong-shan: 2)."""
    return len(_VOWELS.findall(pinyin.lower()))


# A street named after a road (南京东路街道, "Nanjingdonglu Subdistrict") is also where
# the road's English names place an address: "Nanjing East Road", "East Nanjing Road",
# "Nanjing Road East", "Nanjing Rd. (E)", "Nanjing Dong Lu"; 瑞金二路: "Ruijin No. 2
# Road", "Ruijin 2nd Road". They are made from the Chinese name's parts (a base of at
# least two characters, a direction or number, a kind of road) and the pinyin of the
# English name, which must agree with them; the English is not looked up anywhere.
ROAD_KINDS = (("大道", "dadao", "avenue"), ("公路", "gonglu", "highway"), ("大街", "dajie", "street"),
              ("路", "lu", "road"), ("街", "jie", "street"))
ROAD_DIRECTIONS = {"东": ("dong", "east"), "西": ("xi", "west"), "南": ("nan", "south"), "北": ("bei", "north"),
                   "中": ("zhong", "middle")}
ROAD_NUMBERS = {"一": ("yi", "no 1"), "二": ("er", "no 2"), "三": ("san", "no 3"), "四": ("si", "no 4"),
                "五": ("wu", "no 5")}
# How English addresses abbreviate; a single letter after a kind of road is its direction.
_ENGLISH_WORDS = {"rd": "road", "st": "street", "str": "street", "ave": "avenue", "av": "avenue",
                  "hwy": "highway", "central": "middle", "mid": "middle", "number": "no", "nr": "no",
                  "1st": "no 1", "2nd": "no 2", "3rd": "no 3", "4th": "no 4", "5th": "no 5"}
_DIRECTION_LETTERS = {"e": "east", "w": "west", "s": "south", "n": "north", "m": "middle", "c": "middle"}
_KIND_WORDS = {k[2] for k in ROAD_KINDS}


def english_words(text: str) -> str:
    """An address's words as the English stems are matched: lower case, letters and
    digits only, abbreviations written out, framed by spaces (a stem is found as
    ``" stem "``, a whole word or words)."""
    low = re.sub(r"['’]s\b", "", text.lower())
    words = [_ENGLISH_WORDS.get(w, w) for w in re.findall(r"[a-z0-9]+", re.sub(r"['’]", "", low))]
    for i, w in enumerate(words):  # "Nanjing Rd. (E)", "Sichuan N. Rd.", "E. Nanjing Rd.", "300 E Nanjing Rd"
        # Two words before the kind of road only where a road's name begins ("Tower E,
        # Nanjing Rd" is a tower's letter): first, or after a house number.
        begins = i == 0 or words[i - 1].isdigit()
        if w in _DIRECTION_LETTERS and ((i and words[i - 1] in _KIND_WORDS)
                                        or (i + 1 < len(words) and words[i + 1] in _KIND_WORDS)
                                        or (begins and i + 2 < len(words) and words[i + 2] in _KIND_WORDS)):
            words[i] = _DIRECTION_LETTERS[w]
    return f" {' '.join(words)} "


def road_names_en(stem: str, pinyin: str) -> list[str]:
    """The English names of the road ``stem`` (a Chinese road name, 南京东路) whose
    pinyin is ``pinyin`` ("Nanjingdonglu"), as :func:`english_words` writes them; none
    if the two do not agree or the name is not a road's."""
    py = re.sub(r"[^a-z]", "", pinyin.lower())
    road = next((r for r in ROAD_KINDS if stem.endswith(r[0]) and py.endswith(r[1])), None)
    if road is None:
        return []
    zh, kind_py, kind = road
    rest, py = stem[: -len(zh)], py[: -len(kind_py)]
    part = ROAD_DIRECTIONS.get(rest[-1:]) or ROAD_NUMBERS.get(rest[-1:])
    if part is not None and len(rest) > 2:
        if not py.endswith(part[0]):
            return []
        rest, py = rest[:-1], py[: -len(part[0])]
    else:
        part = None  # 湖南路 is Hunan Road, not a south part of a road 湖
    if len(rest) < 2 or not py:
        return []
    names = [f"{py} {kind}", f"{py} {kind_py}"] if part is None else [
        f"{py} {part[1]} {kind}", f"{py} {kind} {part[1]}", f"{py} {part[0]} {kind_py}", f"{py} {part[0]}{kind_py}"]
    if part in ROAD_DIRECTIONS.values():
        names.append(f"{part[1]} {py} {kind}")  # "East Nanjing Road"
    return [f" {n} " for n in names]


def _stems(loc) -> list[tuple[str, bool, AreaInfo]]:
    """(stem, english, area) of every street or town name with a known ending, and
    the English names of the road a street is named after; English stems as
    :func:`english_words` writes them."""
    cached = getattr(loc, "_address_stems", None)
    if cached is None:
        cached = []
        for a in loc.areas:
            stem = None
            for ending in STEM_ENDINGS:
                if a.name and a.name.endswith(ending) and len(a.name) - len(ending) >= 3:
                    stem = a.name[: -len(ending)]
                    cached.append((stem, False, a))
                    break
            english = (a.name_en or "").lower()
            for ending in STEM_ENDINGS_EN:
                if english.endswith(ending):
                    pinyin = english[: -len(ending)]
                    if _syllables(pinyin) >= MIN_STEM_SYLLABLES:
                        cached.append((english_words(pinyin), True, a))
                    if stem is not None:
                        cached += [(name, True, a) for name in road_names_en(stem, pinyin)]
                    break
        loc._address_stems = cached
    return cached


def area_from_address(address: str) -> AreaInfo | None:
    """The deepest area whose name (Chinese or English) the address contains,
    consistent with the other names found (a street must lie in the district
    the address names); a street's name without its ending ("南京东路" for
    南京东路街道) counts too, see :data:`STEM_ENDINGS`. Used when a report has
    an address but no point."""
    text = (address or "").strip()
    if not text:
        return None
    loc = get_locator()
    low = text.lower()
    found = [a for a in loc.areas if (a.name and len(a.name) >= 2 and a.name in text)
             or (a.name_en and len(a.name_en) >= 4 and a.name_en.lower() in low)]
    ids = {a.id for a in found}
    words = english_words(text)
    hits = [(stem, english, a) for stem, english, a in _stems(loc) if a.id not in ids
            and stem in (words if english else text)]
    # " nanjing road " is in " nanjing road east ": the longer name found is the one meant.
    hits = [h for h in hits if not (h[1] and any(o[1] and o[0] != h[0] and h[0] in o[0] for o in hits))]
    by_stem = list({a.id: a for _stem, _english, a in hits}.values())
    if by_stem:
        # Agreeing means lying in an area the address names that does not hold all of
        # them (naming the city, which holds every street, says nothing about which).
        chains = [{x.id for x in loc.chain(a)} for a in by_stem]
        telling = ids - set.intersection(*chains)
        agreeing = [a for a, chain in zip(by_stem, chains, strict=True) if chain & telling]
        if not telling and len(by_stem) == 1:
            agreeing = by_stem
        found += agreeing
        ids |= {a.id for a in agreeing}
    if not found:
        return None

    def support(a: AreaInfo) -> int:
        return sum(1 for x in loc.chain(a) if x.id in ids)

    # Most names agreeing along its chain, then the deepest, then the longest name.
    return max(found, key=lambda a: (support(a), a.depth, len(a.name)))
