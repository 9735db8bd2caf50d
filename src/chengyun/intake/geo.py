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


def _stems(loc) -> list[tuple[str, AreaInfo]]:
    """(stem, area) of every street or town name with a known ending; English
    stems lower-cased and framed as a word pattern (see :func:`_has_stem`)."""
    cached = getattr(loc, "_address_stems", None)
    if cached is None:
        cached = []
        for a in loc.areas:
            for ending in STEM_ENDINGS:
                if a.name and a.name.endswith(ending) and len(a.name) - len(ending) >= 3:
                    cached.append((a.name[: -len(ending)], a))
                    break
            english = (a.name_en or "").lower()
            for ending in STEM_ENDINGS_EN:
                if english.endswith(ending) and _syllables(english[: -len(ending)]) >= MIN_STEM_SYLLABLES:
                    cached.append((re.compile(rf"\b{re.escape(english[: -len(ending)])}\b"), a))
                    break
        loc._address_stems = cached
    return cached


def _has_stem(stem, text: str, low: str) -> bool:
    return stem in text if isinstance(stem, str) else stem.search(low) is not None


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
    by_stem = list({a.id: a for stem, a in _stems(loc) if a.id not in ids and _has_stem(stem, text, low)}.values())
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
