"""Reports (one submission from one channel), their reporters' contact
details (kept apart), photos, duplicate suggestions, cluster warnings, the
classifier's stored models and staff corrections."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from chengyun.cases.models import Channel


class ReporterContact(models.Model):
    """Personal data of a reporter, stored apart from the report and case.

    Shown masked by default; a full view is an audited action
    (:func:`chengyun.intake.privacy.reveal_contact`).
    """

    name = models.CharField(_("name"), max_length=100, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    email = models.CharField(_("email"), max_length=254, blank=True)
    device_id = models.CharField(_("device id"), max_length=100, blank=True)
    account_id = models.CharField(_("account id"), max_length=100, blank=True)
    # The reporter asked to be told when the case's status changes (by email, else SMS): never assumed.
    notify = models.BooleanField(_("wants status messages"), default=False, db_default=False)
    language = models.CharField(_("language"), max_length=12, blank=True, default="", db_default="")
    created_at = models.DateTimeField(_("created"))

    class Meta:
        verbose_name = _("reporter contact")
        verbose_name_plural = _("reporter contacts")

    def __str__(self) -> str:
        from .privacy import mask_name, mask_phone

        return " ".join(x for x in (mask_name(self.name), mask_phone(self.phone)) if x) or f"#{self.pk}"

    @property
    def is_empty(self) -> bool:
        return not any((self.name, self.phone, self.email, self.device_id, self.account_id))


class DuplicateOutcome(models.TextChoices):
    NEW = "new", _("New case")
    ATTACHED = "attached", _("Attached to an open case")
    ASK = "ask", _("Possible duplicate: a dispatcher decides")
    DETACHED = "detached", _("Detached by staff (own case)")
    PENDING = "pending", _("Received: waiting for the intake pipeline")


class Report(models.Model):
    number = models.CharField(_("tracking number"), max_length=32, unique=True, blank=True)
    case = models.ForeignKey(
        "cases.Case", on_delete=models.PROTECT, related_name="reports", verbose_name=_("case"), null=True, blank=True
    )
    channel = models.CharField(_("channel"), max_length=12, choices=Channel.choices)
    source = models.CharField(
        _("source"), max_length=80, blank=True, db_index=True,
        help_text=_("who sent it: an API key, a token's user, an import file"),
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=120, blank=True)
    external_id = models.CharField(_("id in the sending system"), max_length=120, blank=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    # Indexes cost every report a page write (the receive path is one INSERT):
    # the category is found through the (category, received_at) index; the
    # classifier's suggestion, the area and the person who entered it are
    # never searched by, so they have none (deleting a category, area or user
    # reads the reports instead; those are rare admin acts).
    category = models.ForeignKey(
        "taxonomy.Category", null=True, blank=True, on_delete=models.PROTECT, related_name="reports", verbose_name=_("category"),
        db_index=False,
    )
    category_given = models.BooleanField(_("category chosen by the reporter"), default=False)
    suggested_category = models.ForeignKey(
        "taxonomy.Category", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("classifier's suggestion"), db_index=False,
    )
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    classifier_version = models.PositiveIntegerField(_("classifier version"), null=True, blank=True)
    classification = models.JSONField(_("why this category"), default=dict, blank=True)
    lon = models.FloatField(_("longitude"), null=True, blank=True)
    lat = models.FloatField(_("latitude"), null=True, blank=True)
    address = models.CharField(_("address"), max_length=300, blank=True)
    area = models.ForeignKey(
        "areas.Area", null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("area"),
        db_index=False,
    )
    contact = models.OneToOneField(
        ReporterContact, null=True, blank=True, on_delete=models.SET_NULL, related_name="report", verbose_name=_("contact")
    )
    attributes = models.JSONField(_("attributes"), default=dict, blank=True)
    media_url = models.URLField(_("media URL"), max_length=500, blank=True)
    duplicate = models.CharField(_("duplicate check"), max_length=10, choices=DuplicateOutcome.choices, default=DuplicateOutcome.NEW)
    duplicate_explanation = models.JSONField(_("why (not) a duplicate"), default=dict, blank=True)
    received_at = models.DateTimeField(_("received"), db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("entered by"),
        db_index=False,
    )
    generated = models.BooleanField(_("generated demo data"), default=False)

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name = _("report")
        verbose_name_plural = _("reports")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "idempotency_key"], condition=~Q(idempotency_key=""), name="report_idempotency"
            ),
        ]
        indexes = [
            models.Index(fields=["category", "received_at"]),
            # Only the reports the worker has still to process: small, so that
            # receiving a report adds little and the worker finds them at once.
            models.Index(fields=["id"], condition=Q(duplicate="pending"), name="report_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"


def _photo_path(instance, filename):
    return f"reports/{instance.report.received_at:%Y/%m}/{filename}"


class ReportPhoto(models.Model):
    """A photo with its metadata stripped (re-encoded); the EXIF position, if
    any, is kept as data, not inside the file."""

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="photos", verbose_name=_("report"))
    file = models.FileField(_("file"), upload_to=_photo_path)
    content_type = models.CharField(max_length=40)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveIntegerField(_("size in bytes"))
    exif_lon = models.FloatField(null=True, blank=True)
    exif_lat = models.FloatField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("photo")
        verbose_name_plural = _("photos")


class SuggestionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    MERGED = "merged", _("Merged")
    KEPT = "kept", _("Kept apart")


class DuplicateSuggestion(models.Model):
    """A grey-zone match: a dispatcher decides whether ``case`` duplicates ``candidate``."""

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="suggestions", verbose_name=_("report"))
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="duplicate_suggestions", verbose_name=_("case"))
    candidate = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+", verbose_name=_("possible original"))
    score = models.FloatField(_("score"))
    explanation = models.JSONField(default=dict)
    status = models.CharField(_("status"), max_length=10, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING)
    created_at = models.DateTimeField(_("created"))
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("duplicate suggestion")
        verbose_name_plural = _("duplicate suggestions")
        indexes = [models.Index(fields=["status", "created_at"])]


class ClusterWarning(models.Model):
    """Many reports of one category close in space and time (智能发现)."""

    category = models.ForeignKey("taxonomy.Category", on_delete=models.PROTECT, related_name="+", verbose_name=_("category"))
    lon = models.FloatField(_("longitude"))
    lat = models.FloatField(_("latitude"))
    radius_m = models.PositiveIntegerField(_("radius (m)"))
    window_minutes = models.PositiveIntegerField(_("window (minutes)"))
    threshold = models.PositiveIntegerField(_("reports needed"))
    area = models.ForeignKey("areas.Area", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(_("first report"))
    raised_at = models.DateTimeField(_("raised"), db_index=True)
    last_report_at = models.DateTimeField(_("last report"))
    report_count = models.PositiveIntegerField(_("reports"))
    by_area = models.BooleanField(_("by area"), default=False,
                                  help_text=_("raised by the reports of one street, calls without a point among them"))
    reports = models.ManyToManyField(Report, related_name="cluster_warnings", verbose_name=_("reports"))
    case = models.OneToOneField(
        "cases.Case", null=True, blank=True, on_delete=models.SET_NULL, related_name="cluster_warning", verbose_name=_("case")
    )

    class Meta:
        ordering = ["-raised_at"]
        verbose_name = _("cluster warning")
        verbose_name_plural = _("cluster warnings")


class ClassifierModel(models.Model):
    """A trained text classifier: its scores, and the model itself (compressed)
    in the database so that every app server loads the same one."""

    version = models.PositiveIntegerField(_("version"), unique=True)
    created_at = models.DateTimeField(_("trained"))
    trained_by = models.CharField(_("trained by"), max_length=150)
    active = models.BooleanField(_("active"), default=False)
    n_train = models.PositiveIntegerField(_("training examples"))
    n_test = models.PositiveIntegerField(_("held-out examples"))
    accuracy = models.FloatField(_("accuracy"))
    macro_f1 = models.FloatField(_("macro F1"))
    per_category = models.JSONField(_("per-category precision/recall"), default=dict)
    params = models.JSONField(_("parameters"), default=dict)
    data_note = models.CharField(_("training data"), max_length=300, blank=True)
    blob = models.BinaryField(editable=False)

    class Meta:
        ordering = ["-version"]
        verbose_name = _("classifier model")
        verbose_name_plural = _("classifier models")
        constraints = [models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_classifier")]

    def __str__(self) -> str:
        return f"v{self.version} ({self.accuracy:.1%})"


class CategoryCorrection(models.Model):
    """Staff changed a case's category: recorded, and weighted up in the next training."""

    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="category_corrections")
    from_category = models.ForeignKey("taxonomy.Category", null=True, on_delete=models.SET_NULL, related_name="+")
    to_category = models.ForeignKey("taxonomy.Category", on_delete=models.PROTECT, related_name="+")
    text = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField()
    classifier_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = _("category correction")
        verbose_name_plural = _("category corrections")


class NotificationStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Given up")
    STOPPED = "stopped", _("Stopped by the reporter")


class Notification(models.Model):
    """A message to a reporter who asked for them: their report's case (or the
    case it was merged into) changed status. One per (report, status change,
    medium); the address is read from the contact when sending, never copied."""

    class Medium(models.TextChoices):
        EMAIL = "email", _("email")
        SMS = "sms", _("SMS")

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="notifications", verbose_name=_("report"))
    entry = models.ForeignKey("cases.TimelineEntry", on_delete=models.CASCADE, related_name="+",
                              verbose_name=_("status change"))
    medium = models.CharField(_("medium"), max_length=8, choices=Medium.choices)
    status = models.CharField(_("status"), max_length=10, choices=NotificationStatus.choices,
                              default=NotificationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_try_at = models.DateTimeField(_("next try"))
    created_at = models.DateTimeField(_("created"))
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [models.UniqueConstraint(fields=["report", "entry", "medium"], name="notification_once")]
        indexes = [models.Index(fields=["status", "next_try_at"], name="notification_due")]
