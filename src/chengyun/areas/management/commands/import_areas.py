from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext_noop

from chengyun.areas.services import AreaImportError, import_areas


class Command(BaseCommand):
    help = (gettext_noop("Import one level of areas from a GeoJSON file (Polygon/MultiPolygon, EPSG:4326).")
            + " Idempotent by code.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--level", required=True, help="level key, e.g. district; a new key adds a level below the deepest")
        parser.add_argument("--code-field", required=True)
        parser.add_argument("--name-field", required=True)
        parser.add_argument("--name-en-field")
        parser.add_argument("--level-name", help="Chinese name of a new level, e.g. 区")
        parser.add_argument("--level-name-en", help="English name of a new level")
        parser.add_argument("--generated-field", help="boolean property marking generated (not official) polygons")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--parent-code-field")
        group.add_argument("--parent-by-location", action="store_true",
                           help="parent = the area of the level above holding each polygon's representative point")

    def handle(self, *args, **o):
        try:
            result = import_areas(
                o["file"], level=o["level"], code_field=o["code_field"], name_field=o["name_field"],
                name_en_field=o["name_en_field"], parent_code_field=o["parent_code_field"],
                parent_by_location=o["parent_by_location"], level_name=o["level_name"],
                level_name_en=o["level_name_en"], generated_field=o["generated_field"],
            )
        except AreaImportError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{result.level}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged"
        )
