"""The area tree: city > district > street > community > grid (levels are data)."""

from __future__ import annotations

import shapely
from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.i18n import BilingualName


class AreaLevel(BilingualName, models.Model):
    key = models.SlugField(_("key"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=60)
    name_en = models.CharField(_("name (English)"), max_length=60)
    depth = models.PositiveSmallIntegerField(_("depth"), unique=True, help_text=_("0 is the top level"))

    class Meta:
        ordering = ["depth"]
        verbose_name = _("area level")
        verbose_name_plural = _("area levels")


class Area(BilingualName, models.Model):
    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=120)
    name_en = models.CharField(_("name (English)"), max_length=160, blank=True)
    level = models.ForeignKey(AreaLevel, on_delete=models.PROTECT, related_name="areas", verbose_name=_("level"))
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children", verbose_name=_("parent")
    )
    # Materialised path of primary keys, "/1/17/233/": subtree = path startswith.
    path = models.CharField(_("path"), max_length=255, db_index=True, editable=False)
    geometry_wkb = models.BinaryField(_("geometry (WKB)"), editable=False)
    min_lon = models.FloatField(editable=False)
    min_lat = models.FloatField(editable=False)
    max_lon = models.FloatField(editable=False)
    max_lat = models.FloatField(editable=False)
    point_lon = models.FloatField(_("representative longitude"), editable=False)
    point_lat = models.FloatField(_("representative latitude"), editable=False)
    generated = models.BooleanField(
        _("generated"), default=False, help_text=_("polygon or name generated for the demo, not official")
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("area")
        verbose_name_plural = _("areas")

    @property
    def geometry(self):
        return shapely.from_wkb(bytes(self.geometry_wkb))

    def set_geometry(self, geom) -> None:
        self.geometry_wkb = shapely.to_wkb(geom)
        self.min_lon, self.min_lat, self.max_lon, self.max_lat = geom.bounds
        point = geom.representative_point()
        self.point_lon, self.point_lat = point.x, point.y

    def compute_path(self) -> str:
        prefix = self.parent.path if self.parent_id else "/"
        return f"{prefix}{self.pk}/"

    def ancestors(self, include_self: bool = True) -> list[Area]:
        ids = [int(x) for x in self.path.strip("/").split("/") if x]
        if not include_self:
            ids = ids[:-1]
        by_id = {a.pk: a for a in Area.objects.select_related("level").filter(pk__in=ids)}
        return [by_id[i] for i in ids if i in by_id]

    def is_within(self, other: Area) -> bool:
        return self.path.startswith(other.path)

    def subtree(self):
        return Area.objects.filter(path__startswith=self.path)


class AreaSetVersion(models.Model):
    """Bumped whenever areas change, so every process rebuilds its locator."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveBigIntegerField(default=0)
