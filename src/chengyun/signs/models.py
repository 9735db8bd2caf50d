"""City vital signs (城市体征): sensors, their readings and rollups,
indicators with their rules, and the warnings the rules raise.

Time stamps of readings are integers: milliseconds since the Unix epoch, UTC.
That keeps the reading table narrow (three numbers a row), makes minute and
hour buckets plain integer arithmetic in SQL on SQLite and PostgreSQL alike,
and lets a batch be written with one ``executemany``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from chengyun.i18n import BilingualName

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Theme(models.TextChoices):
    WATER = "water", _("Water")
    ROADS = "roads", _("Roads and traffic")
    ENVIRONMENT = "environment", _("Environment")
    SAFETY = "safety", _("Safety")
    SERVICES = "services", _("City services")


class Status(models.TextChoices):
    OK = "ok", pgettext_lazy("vital sign state", "Normal")
    WARNING = "warning", _("Warning")
    ALARM = "alarm", _("Alarm")
    SILENT = "silent", _("No data")
    UNKNOWN = "unknown", _("Not yet measured")


class SensorKind(BilingualName, models.Model):
    """What a sensor measures (water pressure, manhole cover tilt, PM2.5 …)."""

    code = models.CharField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=80)
    name_en = models.CharField(_("name (English)"), max_length=120)
    unit = models.CharField(_("unit"), max_length=20, blank=True)
    theme = models.CharField(_("theme"), max_length=12, choices=Theme.choices)
    alarm_category = models.ForeignKey(
        "taxonomy.Category", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("category of alarm cases"),
    )

    class Meta:
        ordering = ["theme", "code"]
        verbose_name = _("sensor kind")
        verbose_name_plural = _("sensor kinds")


class Sensor(models.Model):
    code = models.CharField(_("code"), max_length=60, unique=True)
    name = models.CharField(_("name"), max_length=120, blank=True)
    kind = models.ForeignKey(SensorKind, on_delete=models.PROTECT, related_name="sensors", verbose_name=_("kind"))
    unit = models.CharField(_("unit"), max_length=20, blank=True, help_text=_("empty: the kind's unit"))
    lon = models.FloatField(_("longitude"), null=True, blank=True)
    lat = models.FloatField(_("latitude"), null=True, blank=True)
    area = models.ForeignKey("areas.Area", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                             verbose_name=_("area"))
    area_path = models.CharField(max_length=255, blank=True, db_index=True, editable=False)
    department = models.ForeignKey("org.Department", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="sensors", verbose_name=_("owner department"))
    interval_s = models.PositiveIntegerField(_("expected interval (s)"), default=300)
    virtual = models.BooleanField(_("computed series"), default=False,
                                  help_text=_("holds the values of a computed indicator, not a device"))
    active = models.BooleanField(_("active"), default=True)
    generated = models.BooleanField(_("generated demo data"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_ms = models.BigIntegerField(null=True, blank=True, editable=False)
    last_value = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["code"]
        verbose_name = _("sensor")
        verbose_name_plural = _("sensors")

    def __str__(self) -> str:
        return self.code

    @property
    def stored_unit(self) -> str:
        """The unit as stored (what the API gives: data, not words of a language)."""
        return self.unit or self.kind.unit

    @property
    def display_unit(self) -> str:
        unit = self.stored_unit
        # Units written as words (the case counts' 件) in the reader's language; symbols
        # (mm, kPa, µg/m³, °C) are the same in both.
        return str(UNIT_WORDS.get(unit, unit))


UNIT_WORDS = {"件": pgettext_lazy("unit of a count of cases", "cases")}


class Reading(models.Model):
    """One value of one sensor at one time. (sensor, ts) is the primary key:
    a reading sent twice is stored once, and the table is that one key and
    nothing else — no ``id`` column and no second index to keep up to date.
    On SQLite the table is ``WITHOUT ROWID`` (migration 0003), so each reading
    sits in a single b-tree ordered by sensor and time; on PostgreSQL the key
    is the table's only b-tree. A migration that rebuilds this table on SQLite
    must keep ``WITHOUT ROWID`` (Django's own table rebuild drops it;
    ``tests/signs/test_storage.py`` checks)."""

    pk = models.CompositePrimaryKey("sensor", "ts")
    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="+", db_index=False)
    ts = models.BigIntegerField(_("time (ms since epoch, UTC)"))
    value = models.FloatField(_("value"))

    class Meta:
        verbose_name = _("reading")
        verbose_name_plural = _("readings")


class Resolution(models.TextChoices):
    MINUTE = "m", _("per minute")
    HOUR = "h", _("per hour")


class Rollup(models.Model):
    """count/min/max/sum of a sensor's readings per minute or hour, kept
    longer than the raw readings; maintained as readings arrive."""

    sensor = models.ForeignKey(Sensor, on_delete=models.CASCADE, related_name="+", db_index=False)
    resolution = models.CharField(max_length=1, choices=Resolution.choices)
    bucket = models.BigIntegerField()  # start of the minute/hour, ms since epoch
    count = models.PositiveIntegerField()
    min = models.FloatField()
    max = models.FloatField()
    sum = models.FloatField()

    class Meta:
        verbose_name = _("rollup")
        verbose_name_plural = _("rollups")
        constraints = [models.UniqueConstraint(fields=["sensor", "resolution", "bucket"], name="rollup_once")]

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else float("nan")


class Source(models.TextChoices):
    SENSOR = "sensor", _("One sensor's readings")
    AGGREGATE = "aggregate", _("Computed from other sensors")
    CASES = "cases", _("Computed from case statistics")


class Aggregate(models.TextChoices):
    MEAN = "mean", _("mean")
    MAX = "max", _("maximum")
    MIN = "min", _("minimum")
    SUM = "sum", _("sum")


class Indicator(BilingualName, models.Model):
    """A watched series with its rules. Its values are the readings of
    ``sensor``; for a computed indicator that is a virtual sensor the
    computation writes to, so storage, rollups and rules are the same."""

    code = models.CharField(_("code"), max_length=60, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=120)
    name_en = models.CharField(_("name (English)"), max_length=160)
    theme = models.CharField(_("theme"), max_length=12, choices=Theme.choices)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices, default=Source.SENSOR)
    sensor = models.OneToOneField(Sensor, on_delete=models.CASCADE, related_name="indicator", verbose_name=_("series"))
    inputs = models.ManyToManyField(Sensor, blank=True, related_name="+", verbose_name=_("input sensors"))
    aggregate = models.CharField(_("aggregate"), max_length=6, choices=Aggregate.choices, blank=True)
    case_category = models.ForeignKey("taxonomy.Category", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+", verbose_name=_("case category counted"))
    case_area = models.ForeignKey("areas.Area", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  verbose_name=_("cases in area"))
    # Rules. Bands: empty = not used.
    warn_low = models.FloatField(_("warning below"), null=True, blank=True)
    warn_high = models.FloatField(_("warning above"), null=True, blank=True)
    alarm_low = models.FloatField(_("alarm below"), null=True, blank=True)
    alarm_high = models.FloatField(_("alarm above"), null=True, blank=True)
    hysteresis = models.FloatField(_("hysteresis"), default=0.0,
                                   help_text=_("a band warning ends only this far back inside the band"))
    rate_limit = models.FloatField(_("rate-of-change limit (per minute)"), null=True, blank=True)
    missing_intervals = models.PositiveIntegerField(_("silent after N intervals"), default=3,
                                                    help_text=_("0 = no missing-data rule"))
    flatline_minutes = models.PositiveIntegerField(
        _("stuck after (minutes)"), null=True, blank=True,
        help_text=_("a value that stays within the tolerance this long is a stuck sensor; empty or 0 = not used"))
    flatline_tolerance = models.FloatField(_("stuck tolerance"), default=0.0,
                                           help_text=_("changes up to this much count as no change"))
    anomaly = models.BooleanField(_("learned anomaly detection"), default=False)
    anomaly_score = models.FloatField(_("anomaly threshold (robust z)"), default=6.0)
    anomaly_clear = models.FloatField(_("anomaly ends below (robust z)"), default=3.0)
    alarm_category = models.ForeignKey("taxonomy.Category", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+", verbose_name=_("category of alarm cases"),
                                       help_text=_("empty: the sensor kind's"))
    active = models.BooleanField(_("active"), default=True)
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.UNKNOWN, editable=False)

    class Meta:
        ordering = ["theme", "code"]
        verbose_name = _("indicator")
        verbose_name_plural = _("indicators")


class Baseline(models.Model):
    """The learned normal of an indicator per hour of the week (0 = Monday 00:00
    city time): median and median absolute deviation of the hourly means."""

    indicator = models.ForeignKey(Indicator, on_delete=models.CASCADE, related_name="baselines")
    hour_of_week = models.PositiveSmallIntegerField()
    median = models.FloatField()
    mad = models.FloatField()
    samples = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["indicator", "hour_of_week"], name="baseline_once")]


class Level(models.TextChoices):
    WARNING = "warning", _("Warning")
    ALARM = "alarm", _("Alarm")


class Rule(models.TextChoices):
    BAND_HIGH = "band_high", _("Above its band")
    BAND_LOW = "band_low", _("Below its band")
    RATE = "rate", _("Changing too fast")
    MISSING = "missing", _("Silent")
    ANOMALY = "anomaly", _("Unusual for the time of week")
    FLATLINE = "flatline", _("Stuck value")


class Warning(models.Model):
    """One excursion: it starts when a rule trips and ends when the value is
    back (with hysteresis), so one excursion makes one warning."""

    indicator = models.ForeignKey(Indicator, on_delete=models.CASCADE, related_name="warnings", verbose_name=_("indicator"))
    rule = models.CharField(_("rule"), max_length=10, choices=Rule.choices)
    level = models.CharField(_("level"), max_length=8, choices=Level.choices)
    started_ms = models.BigIntegerField()
    ended_ms = models.BigIntegerField(null=True, blank=True)
    peak_value = models.FloatField(null=True, blank=True)
    peak_ms = models.BigIntegerField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    explanation = models.JSONField(default=dict)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    case = models.ForeignKey("cases.Case", null=True, blank=True, on_delete=models.SET_NULL, related_name="sign_warnings")
    generated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_ms"]
        verbose_name = _("warning")
        verbose_name_plural = _("warnings")
        indexes = [models.Index(fields=["indicator", "ended_ms"]), models.Index(fields=["started_ms"])]

    @property
    def started_at(self) -> datetime:
        return from_ms(self.started_ms)

    @property
    def ended_at(self) -> datetime | None:
        return from_ms(self.ended_ms) if self.ended_ms is not None else None


class SourceTally(models.Model):
    """What one source sent in one hour (by arrival): an API account
    (``user:{id}``), the MQTT subscriber (``mqtt:{client id}``), the demo's
    simulator. Readings refused are counted here with the latest reason, so
    an operator sees which gateway sends what, and what is wrong with it,
    for MQTT too, where no one reads an answer."""

    source = models.CharField(_("source"), max_length=120)
    hour_ms = models.BigIntegerField(_("hour"))
    batches = models.PositiveBigIntegerField(_("batches"), default=0)
    received = models.PositiveBigIntegerField(_("received"), default=0)
    stored = models.PositiveBigIntegerField(_("stored"), default=0)
    duplicates = models.PositiveBigIntegerField(_("duplicates"), default=0)
    refused = models.PositiveBigIntegerField(_("refused"), default=0)
    last_ms = models.BigIntegerField(_("last batch"))
    last_refusal = models.CharField(_("latest reason for a refusal"), max_length=300, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "hour_ms"], name="source_tally_once")]
        ordering = ["-hour_ms", "source"]
        verbose_name = _("readings by source")
        verbose_name_plural = _("readings by source")

    def __str__(self) -> str:
        return f"{self.source} @ {datetime.fromtimestamp(self.hour_ms / 1000, UTC):%Y-%m-%d %H:00}Z"
