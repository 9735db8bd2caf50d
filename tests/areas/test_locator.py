"""Locating points: the deepest area and its chain, by service, API and CLI."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import shapely
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chengyun.areas.locator import get_locator, in_city
from chengyun.areas.services import import_areas, locate

from .. import factories as f

pytestmark = pytest.mark.django_db


def codes(chain) -> list[str]:
    return [a.code for a in chain]


# --------------------------------------------------------------------------- service


def test_deepest_area_and_its_chain(tree):
    chain = locate(*f.centre("100104002"))
    assert codes(chain) == [f.CITY, "100104", "100104002"]
    assert [a.level_key for a in chain] == ["city", "district", "street"]
    assert chain[-1].name == "街道4002" and chain[-1].name_en == "Street 4002"


def test_point_outside_every_area(tree):
    assert locate(*f.OUTSIDE) == ()
    assert get_locator().locate_many([f.OUTSIDE[0]], [f.OUTSIDE[1]]).tolist() == [-1]
    assert not in_city(*f.OUTSIDE) and in_city(*f.centre("100104002"))


@pytest.mark.parametrize(
    "point",
    [
        (121.0, 30.5),   # border of districts 100101 / 100102 (and of their streets)
        (121.0, 31.0),   # the corner shared by all four districts
        (120.5, 30.5),   # border of the two streets of 100101
        (120.25, 31.0),  # border of 100101 / 100103
    ],
)
def test_point_on_a_shared_border_belongs_to_exactly_one_area_always_the_same(tree, point):
    loc = get_locator()
    first = locate(*point)
    assert len(first) == 3, "a border point is still inside the city"
    holders = [a.code for a, geom in zip(loc.areas, loc.geoms, strict=True)
               if a.level_key == "street" and geom.covers(shapely.Point(*point))]
    assert len(holders) >= 2, "the point really is on a border"
    # Exactly one (the smallest code among the deepest candidates), the same every time and in batches.
    assert first[-1].code == min(holders)
    for _ in range(3):
        assert codes(locate(*point)) == codes(first)
    batch = loc.locate_many([point[0]] * 5, [point[1]] * 5)
    assert {loc.areas[i].code for i in batch} == {first[-1].code}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    points=st.lists(
        st.tuples(
            st.one_of(st.floats(119.5, 122.5), st.sampled_from([120.0, 120.5, 121.0, 121.5, 122.0])),
            st.one_of(st.floats(29.5, 32.5), st.sampled_from([30.0, 30.5, 31.0, 31.5, 32.0])),
        ),
        min_size=1, max_size=40,
    )
)
def test_locate_many_agrees_with_locate(tree, points):
    loc = get_locator()
    lons, lats = zip(*points, strict=True)
    batch = loc.locate_many(np.array(lons), np.array(lats))
    for (lon, lat), i in zip(points, batch, strict=True):
        one = loc.locate(lon, lat)
        assert in_city(lon, lat) == (i >= 0), "in the city exactly when in some area (the tree has no gaps)"
        if i < 0:
            assert one is None
        else:
            assert one is not None and one.code == loc.areas[i].code
            inside = 120 <= lon <= 122 and 30 <= lat <= 32
            assert inside and one.level_key == "street"


def test_locator_is_rebuilt_after_an_import(tmp_path, db):
    f.build_area_tree(tmp_path, streets=False)
    point = f.centre("100102001")
    assert codes(locate(*point)) == [f.CITY, "100102"]
    assert len(get_locator()) == 5

    import_areas(f.street_file(tmp_path), level="street", code_field="code", name_field="name", parent_by_location=True)

    assert codes(locate(*point)) == [f.CITY, "100102", "100102001"]
    assert len(get_locator()) == 13


# --------------------------------------------------------------------------- HTTP


def test_api_locate_returns_the_chain(client, tree):
    lon, lat = f.centre("100103001")
    response = client.get("/api/v1/areas/locate", {"lon": lon, "lat": lat})
    assert response.status_code == 200
    body = response.json()
    assert (body["lon"], body["lat"]) == (lon, lat)
    assert [(a["code"], a["level"]) for a in body["chain"]] == [
        (f.CITY, "city"), ("100103", "district"), ("100103001", "street"),
    ]
    assert body["chain"][1]["name"] == "区3" and body["chain"][1]["name_en"] == "District 3"


def test_api_locate_finds_an_area_imported_after_the_first_call(client, tmp_path, db):
    f.build_area_tree(tmp_path, streets=False)
    lon, lat = f.centre("100101002")
    assert len(client.get("/api/v1/areas/locate", {"lon": lon, "lat": lat}).json()["chain"]) == 2
    import_areas(f.street_file(tmp_path), level="street", code_field="code", name_field="name", parent_by_location=True)
    chain = client.get("/api/v1/areas/locate", {"lon": lon, "lat": lat}).json()["chain"]
    assert chain[-1]["code"] == "100101002"


def test_api_locate_outside_is_404(client, tree):
    response = client.get("/api/v1/areas/locate", {"lon": f.OUTSIDE[0], "lat": f.OUTSIDE[1]})
    assert response.status_code == 404


@pytest.mark.parametrize("lat", ["95", "-90.5", "north"])
def test_api_locate_bad_latitude_is_400_naming_the_field(client, tree, lat):
    response = client.get("/api/v1/areas/locate", {"lon": "121", "lat": lat})
    assert response.status_code == 400
    assert response.json()["field"] == "lat"


def test_api_locate_needs_no_login(client, tree):
    lon, lat = f.centre("100101")
    assert client.get("/api/v1/areas/locate", {"lon": lon, "lat": lat}).status_code == 200


# --------------------------------------------------------------------------- CLI


def test_cli_locate_one_point(tree):
    out = io.StringIO()
    call_command("locate", *map(str, f.centre("100102002")), stdout=out)
    rows = [line.split("\t") for line in out.getvalue().splitlines()]
    assert [r[:2] for r in rows] == [["city", f.CITY], ["district", "100102"], ["street", "100102002"]]


def test_cli_locate_outside_fails(tree):
    with pytest.raises(CommandError, match="outside every area"):
        call_command("locate", *map(str, f.OUTSIDE), stdout=io.StringIO())


def test_cli_locate_csv(tree, tmp_path):
    src = tmp_path / "points.csv"
    inside = f.centre("100104001")
    border = (121.0, 30.5)
    src.write_text(f"lon,lat\n{inside[0]},{inside[1]}\n{f.OUTSIDE[0]},{f.OUTSIDE[1]}\n{border[0]},{border[1]}\n",
                   encoding="utf-8")
    out = tmp_path / "located.csv"

    call_command("locate", "--csv", str(src), "--output", str(out), stdout=io.StringIO())

    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0] == ["lon", "lat", "city", "district", "street"]
    assert rows[1] == [repr(inside[0]), repr(inside[1]), f.CITY, "100104", "100104001"]
    assert rows[2] == [repr(f.OUTSIDE[0]), repr(f.OUTSIDE[1]), "", "", ""]
    assert rows[3][2:] == [f.CITY, "100101", "100101002"]  # the border point: smallest code wins
    assert len(rows) == 4


def test_cli_locate_csv_without_header_to_stdout(tree, tmp_path, capsys):
    src = tmp_path / "points.csv"
    src.write_text("120.25,30.5\n", encoding="utf-8")
    # Note: the CSV goes to sys.stdout, not to the command's stdout, so capture the process output.
    call_command("locate", "--csv", str(src))
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["lon", "lat", "city", "district", "street"], ["120.25", "30.5", f.CITY, "100101", "100101001"]]


def test_cli_locate_csv_bad_row_names_the_line(tree, tmp_path):
    src = tmp_path / "points.csv"
    src.write_text("lon,lat\n120.25,30.5\nabc,def\n", encoding="utf-8")
    with pytest.raises(CommandError, match="line 3"):
        call_command("locate", "--csv", str(src), "--output", str(tmp_path / "o.csv"), stdout=io.StringIO())


@pytest.mark.slow
def test_demo_pack_city_and_districts(db):
    """The real Shanghai pack (city + districts only): each district holds its own representative point."""
    from pathlib import Path

    import chengyun

    pack = Path(chengyun.__file__).parent / "demo" / "pack" / "areas"
    import_areas(pack / "city.geojson", level="city", code_field="code", name_field="name", name_en_field="name_en")
    result = import_areas(pack / "district.geojson", level="district", code_field="code", name_field="name",
                          name_en_field="name_en", parent_code_field="parent_code")
    assert result.created >= 16
    from chengyun.areas.models import Area

    huangpu = Area.objects.get(code="310101")
    chain = locate(huangpu.point_lon, huangpu.point_lat)
    assert codes(chain) == ["310000", "310101"]
    assert chain[-1].name_en == "Huangpu"
    districts = Area.objects.filter(level__key="district")
    loc = get_locator()
    found = loc.locate_many([d.point_lon for d in districts], [d.point_lat for d in districts])
    assert [loc.areas[i].code for i in found] == [d.code for d in districts]
    assert locate(*f.OUTSIDE) == ()


def test_api_lists_areas_by_level_and_parent_and_names_an_unknown_one(client, tree):
    streets = client.get("/api/v1/areas/", {"level": "street", "parent": "100102"}).json()
    assert [a["code"] for a in streets] == ["100102001", "100102002"][:len(streets)] and streets
    assert all(a["parent"] == "100102" and a["level"] == "street" for a in streets)
    assert len(client.get("/api/v1/areas/", {"limit": 2}).json()) == 2
    assert client.get("/api/v1/areas/", {"limit": 2, "offset": 1}).json()[0] == client.get("/api/v1/areas/").json()[1]
    for params, field in (({"level": "foo"}, "level"), ({"parent": "999"}, "parent")):
        response = client.get("/api/v1/areas/", params, HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 400 and response.json()["field"] == field
    assert "street" in client.get("/api/v1/areas/", {"level": "foo"}, HTTP_ACCEPT_LANGUAGE="en").json()["detail"]
