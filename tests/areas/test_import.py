"""`chengyun import-areas`: one level per file, idempotent, all-or-nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chengyun.areas.models import Area, AreaLevel
from chengyun.audit.models import AuditRecord

from .. import factories as f

pytestmark = pytest.mark.django_db


def run_import(path, *args) -> str:
    out = io.StringIO()
    call_command("import_areas", str(path), *args, stdout=out)
    return out.getvalue()


CITY_ARGS = ("--level", "city", "--code-field", "code", "--name-field", "name", "--name-en-field", "name_en",
             "--level-name", "市", "--level-name-en", "City")
DISTRICT_ARGS = ("--level", "district", "--code-field", "code", "--name-field", "name", "--name-en-field", "name_en",
                 "--parent-code-field", "parent")
STREET_ARGS = ("--level", "street", "--code-field", "code", "--name-field", "name", "--parent-by-location")


def import_city_and_districts(tmp_path):
    run_import(f.city_file(tmp_path), *CITY_ARGS)
    run_import(f.district_file(tmp_path), *DISTRICT_ARGS)


# --------------------------------------------------------------------------- happy path


def test_levels_are_created_in_order_with_parents_by_code_and_by_location(tmp_path):
    assert "city: 1 created, 0 updated, 0 unchanged" in run_import(f.city_file(tmp_path), *CITY_ARGS)
    assert "district: 4 created" in run_import(f.district_file(tmp_path), *DISTRICT_ARGS)
    assert "street: 8 created" in run_import(f.street_file(tmp_path), *STREET_ARGS)

    assert list(AreaLevel.objects.order_by("depth").values_list("key", "depth")) == [
        ("city", 0), ("district", 1), ("street", 2),
    ]
    city = Area.objects.get(code=f.CITY)
    assert city.parent is None and city.level.key == "city" and city.name_en == "Testcity"
    for code in f.DISTRICT_BOUNDS:
        district = Area.objects.get(code=code)
        assert district.parent == city  # by code
        assert district.path == f"{city.path}{district.pk}/"
        streets = Area.objects.filter(parent=district).order_by("code")
        assert [s.code for s in streets] == [code + "001", code + "002"]  # by location
        for street in streets:
            assert street.is_within(district) and street.is_within(city)
            assert [a.code for a in street.ancestors()] == [f.CITY, code, street.code]


def test_second_run_is_idempotent_and_reports_unchanged(tmp_path):
    import_city_and_districts(tmp_path)
    before = set(Area.objects.values_list("pk", "code", "path"))

    out = run_import(f.district_file(tmp_path), *DISTRICT_ARGS)

    assert "district: 0 created, 0 updated, 4 unchanged" in out
    assert set(Area.objects.values_list("pk", "code", "path")) == before
    assert AreaLevel.objects.count() == 2


def test_changed_name_is_reported_as_updated(tmp_path):
    import_city_and_districts(tmp_path)
    path = f.write_geojson(tmp_path, "d2.geojson", [
        f.feature(code="100101", name="新名字", name_en="Renamed", parent=f.CITY, geometry=f.box(120, 30, 121, 31)),
    ])
    assert "0 created, 1 updated, 0 unchanged" in run_import(path, *DISTRICT_ARGS)
    assert Area.objects.get(code="100101").name == "新名字"


def test_multipolygon_and_a_top_level_with_many_polygons(tmp_path):
    islands = {
        "type": "MultiPolygon",
        "coordinates": [f.box(120, 30, 121, 31)["coordinates"], f.box(123, 30, 124, 31)["coordinates"]],
    }
    path = f.write_geojson(tmp_path, "top.geojson", [
        f.feature(code="A", name="甲", geometry=islands),
        f.feature(code="B", name="乙", geometry=f.box(125, 30, 126, 31)),
        f.feature(code="C", name="丙", geometry=f.box(127, 30, 128, 31)),
    ])

    assert "3 created" in run_import(path, "--level", "province", "--code-field", "code", "--name-field", "name")

    a = Area.objects.get(code="A")
    assert a.geometry.geom_type == "MultiPolygon"
    assert (a.min_lon, a.max_lon) == (120, 124)
    assert Area.objects.filter(parent__isnull=True).count() == 3
    assert f.CITY not in Area.objects.values_list("code", flat=True)


def test_import_is_audited(tmp_path):
    run_import(f.city_file(tmp_path), *CITY_ARGS)
    rec = AuditRecord.objects.filter(action="areas.import").get()
    assert rec.object_id == "city" and rec.data["created"] == 1


# --------------------------------------------------------------------------- errors name the feature, nothing is written


def assert_import_fails(path, args, *needles):
    counts = (Area.objects.count(), AreaLevel.objects.count(), list(AreaLevel.objects.values_list("key", flat=True)))
    with pytest.raises(CommandError) as exc:
        run_import(path, *args)
    message = str(exc.value)
    for needle in needles:
        assert needle in message, message
    assert (Area.objects.count(), AreaLevel.objects.count(), list(AreaLevel.objects.values_list("key", flat=True))) == counts
    return message


def test_not_json(tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    assert_import_fails(path, CITY_ARGS, "broken.geojson", "not a JSON file")


def test_not_a_feature_collection(tmp_path):
    path = tmp_path / "feature.geojson"
    path.write_text('{"type": "Feature", "properties": {}, "geometry": null}', encoding="utf-8")
    assert_import_fails(path, CITY_ARGS, "feature.geojson", "not a GeoJSON FeatureCollection")


def test_missing_code_field_names_the_feature(tmp_path):
    path = f.write_geojson(tmp_path, "c.geojson", [
        f.feature(code="X1", name="一", geometry=f.box(0, 0, 1, 1)),
        f.feature(name="二", geometry=f.box(1, 0, 2, 1)),
    ])
    assert_import_fails(path, CITY_ARGS, "feature 2", "code")


def test_missing_name_field_names_the_feature(tmp_path):
    path = f.write_geojson(tmp_path, "c.geojson", [
        f.feature(code="X1", name="一", geometry=f.box(0, 0, 1, 1)),
        f.feature(code="X2", name="  ", geometry=f.box(1, 0, 2, 1)),
    ])
    assert_import_fails(path, CITY_ARGS, "feature 2 (code X2)", "name")


def test_self_intersecting_bowtie_is_invalid(tmp_path):
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    path = f.write_geojson(tmp_path, "c.geojson", [
        f.feature(code="OK", name="好", geometry=f.box(2, 2, 3, 3)),
        f.feature(code="BOW", name="蝴蝶结", geometry=bowtie),
    ])
    message = assert_import_fails(path, CITY_ARGS, "feature 2 (code BOW)", "invalid geometry")
    assert "Self-intersection" in message


def test_point_geometry_is_refused(tmp_path):
    path = f.write_geojson(tmp_path, "c.geojson", [
        f.feature(code="PT", name="点", geometry={"type": "Point", "coordinates": [120.5, 30.5]}),
    ])
    assert_import_fails(path, CITY_ARGS, "feature 1 (code PT)", "Point", "Polygon")


def test_polygon_outside_every_parent(tmp_path):
    import_city_and_districts(tmp_path)
    path = f.write_geojson(tmp_path, "s.geojson", [
        f.feature(code="100101001", name="内", geometry=f.box(120.0, 30.0, 120.5, 31.0)),
        f.feature(code="999999001", name="外", geometry=f.box(130.0, 30.0, 130.5, 31.0)),
    ])
    assert_import_fails(path, STREET_ARGS, "feature 2 (code 999999001)", "outside", "district")
    assert not AreaLevel.objects.filter(key="street").exists()


def test_unknown_parent_code(tmp_path):
    run_import(f.city_file(tmp_path), *CITY_ARGS)
    path = f.write_geojson(tmp_path, "d.geojson", [
        f.feature(code="100101", name="一区", parent=f.CITY, geometry=f.box(120, 30, 121, 31)),
        f.feature(code="100102", name="二区", parent="999999", geometry=f.box(121, 30, 122, 31)),
    ])
    assert_import_fails(path, DISTRICT_ARGS, "feature 2 (code 100102)", "999999")
    assert not Area.objects.filter(code="100101").exists()


def test_lower_level_needs_a_parent_rule(tmp_path):
    run_import(f.city_file(tmp_path), *CITY_ARGS)
    assert_import_fails(f.district_file(tmp_path), ("--level", "district", "--code-field", "code", "--name-field", "name"),
                        "--parent-code-field", "--parent-by-location")


def test_failed_reimport_leaves_earlier_import_untouched(tmp_path):
    import_city_and_districts(tmp_path)
    before = list(Area.objects.order_by("code").values_list("code", "name", "path"))
    path = f.write_geojson(tmp_path, "d.geojson", [
        f.feature(code="100101", name="改名", parent=f.CITY, geometry=f.box(120, 30, 121, 31)),
        f.feature(code="100102", name="坏", parent=f.CITY, geometry={"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
    ])
    assert_import_fails(path, DISTRICT_ARGS, "feature 2 (code 100102)")
    assert list(Area.objects.order_by("code").values_list("code", "name", "path")) == before


# --------------------------------------------------------------------------- the real command line


@pytest.mark.slow
def test_cli_subprocess_import_and_locate(tmp_path):
    """`chengyun import-areas` and `chengyun locate` as a user runs them, on a throwaway SQLite file."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "CHENGYUN_DATA_DIR": str(tmp_path / "data"),
    }
    exe = str(Path(sys.executable).with_name("chengyun"))

    def cli(*args):
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("migrate", "-v", "0").returncode == 0
    done = cli("import-areas", str(f.city_file(tmp_path)), *CITY_ARGS)
    assert done.returncode == 0, done.stderr
    assert "city: 1 created" in done.stdout
    done = cli("import-areas", str(f.district_file(tmp_path)), *DISTRICT_ARGS)
    assert done.returncode == 0, done.stderr

    bad = tmp_path / "bad.geojson"
    bad.write_text("nope", encoding="utf-8")
    failed = cli("import-areas", str(bad), *DISTRICT_ARGS)
    assert failed.returncode == 1
    # The CLI speaks the city's language (zh-hans by default): check the parts that are not translated.
    assert "CommandError" in failed.stderr and "bad.geojson" in failed.stderr and "Expecting value" in failed.stderr

    lon, lat = f.centre("100104")
    found = cli("locate", str(lon), str(lat))
    assert found.returncode == 0, found.stderr
    assert [line.split("\t")[:2] for line in found.stdout.splitlines()] == [["city", f.CITY], ["district", "100104"]]

    outside = cli("locate", *map(str, f.OUTSIDE))
    assert outside.returncode == 1 and "110.0,20.0" in outside.stderr

    verified = cli("audit", "verify")
    assert verified.returncode == 0 and "audit chain OK" in verified.stdout
