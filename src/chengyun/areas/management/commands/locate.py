import csv
import sys

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext_noop
from tqdm import tqdm

from chengyun.areas.locator import get_locator

BATCH = 100_000


class Command(BaseCommand):
    help = gettext_noop("Locate points in the area tree: `locate LON LAT`, or `locate --csv FILE [--output OUT]` "
                         "for many.")

    def add_arguments(self, parser):
        parser.add_argument("lon", nargs="?", type=float)
        parser.add_argument("lat", nargs="?", type=float)
        parser.add_argument("--csv", dest="csv_file", help="CSV with lon,lat columns (a header row is optional)")
        parser.add_argument("--output", "-o", help="write CSV here instead of standard output")

    def handle(self, *args, **o):
        loc = get_locator()
        if o["csv_file"]:
            return self._csv(loc, o["csv_file"], o["output"])
        if o["lon"] is None or o["lat"] is None:
            raise CommandError("give LON LAT, or --csv FILE")
        chain = loc.locate_chain(o["lon"], o["lat"])
        if not chain:
            raise CommandError(f"{o['lon']},{o['lat']} is outside every area")
        for a in chain:
            self.stdout.write(f"{a.level_key}\t{a.code}\t{a.name}\t{a.name_en}")

    def _csv(self, loc, path, output):
        levels = [key for _depth, key in loc.levels]
        depth_pos = {depth: i for i, (depth, _key) in enumerate(loc.levels)}
        try:
            src = open(path, newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise CommandError(f"{path}: {exc.strerror}") from None
        out = open(output, "w", newline="", encoding="utf-8") if output else self.stdout
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["lon", "lat", *levels])
        with src:
            reader = csv.reader(src)
            with open(path, encoding="utf-8-sig") as counting:
                total = sum(1 for _ in counting)
            bar = tqdm(total=total, unit="pt", disable=total < 50_000, file=sys.stderr)
            rows, line_no = [], 0
            for row in reader:
                line_no += 1
                if not row or (line_no == 1 and not _is_number(row[0])):
                    bar.update(1)
                    continue
                if len(row) < 2 or not _is_number(row[0]) or not _is_number(row[1]):
                    raise CommandError(f"{path}, line {line_no}: expected lon,lat numbers, got {row!r}")
                rows.append((float(row[0]), float(row[1])))
                if len(rows) >= BATCH:
                    self._flush(loc, rows, writer, len(levels), depth_pos)
                    bar.update(len(rows))
                    rows = []
            if rows:
                self._flush(loc, rows, writer, len(levels), depth_pos)
                bar.update(len(rows))
            bar.close()
        if output:
            out.close()

    def _flush(self, loc, rows, writer, n_levels, depth_pos):
        arr = np.array(rows, dtype=np.float64)
        idx = loc.locate_many(arr[:, 0], arr[:, 1])
        for (lon, lat), i in zip(rows, idx, strict=True):
            cols = [""] * n_levels
            if i >= 0:
                for a in loc.chain(loc.areas[i]):
                    cols[depth_pos[a.depth]] = a.code
            writer.writerow([repr(lon), repr(lat), *cols])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
