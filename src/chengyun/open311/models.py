"""Open311 partners' API keys, the extra questions a service asks
(service definitions) and the updates partners post for a request."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.i18n import prefers_chinese


class ApiKey(models.Model):
    """A partner system's key. Only its SHA-256 hash is stored; the key itself
    is shown once, when it is made (:func:`chengyun.open311.services.create_api_key`)."""

    name = models.CharField(_("partner"), max_length=120, db_index=True)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, help_text=_("the key's first characters, to recognise it"))
    key_hash = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    contact_note = models.TextField(_("contact"), blank=True, help_text=_("who to call about this partner's use of the API"))
    created_at = models.DateTimeField(_("created"))
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_by = models.CharField(_("revoked by"), max_length=150, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        verbose_name = _("Open311 API key")
        verbose_name_plural = _("Open311 API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def source(self) -> str:
        """How reports sent with this key are marked (``Report.source``)."""
        return f"apikey:{self.pk}"

    @property
    def actor(self) -> str:
        """The name this key acts under in timelines and the audit log."""
        return f"open311:{self.name}"


class Datatype(models.TextChoices):
    STRING = "string", _("Text, one line")
    NUMBER = "number", _("Number")
    DATETIME = "datetime", _("Date and time")
    TEXT = "text", _("Text, several lines")
    SINGLEVALUELIST = "singlevaluelist", _("Choose one")
    MULTIVALUELIST = "multivaluelist", _("Choose any")


LIST_DATATYPES = frozenset({Datatype.SINGLEVALUELIST, Datatype.MULTIVALUELIST})


class ServiceAttribute(models.Model):
    """One extra question of a service (an Open311 service definition attribute).

    ``values`` (list datatypes only) is a list of ``{"key": …, "name": …,
    "name_en": …}``; the reporter answers with the key.
    """

    category = models.ForeignKey(
        "taxonomy.Category", on_delete=models.CASCADE, related_name="open311_attributes", verbose_name=_("category")
    )
    code = models.SlugField(_("code"), max_length=50)
    datatype = models.CharField(_("datatype"), max_length=16, choices=Datatype.choices, default=Datatype.STRING)
    variable = models.BooleanField(
        _("asks for input"), default=True, help_text=_("off: the text is only shown to the reporter, nothing is asked")
    )
    required = models.BooleanField(_("required"), default=False)
    description = models.CharField(_("question (Chinese)"), max_length=300)
    description_en = models.CharField(_("question (English)"), max_length=300, blank=True)
    datatype_description = models.CharField(_("input hint (Chinese)"), max_length=200, blank=True)
    datatype_description_en = models.CharField(_("input hint (English)"), max_length=200, blank=True)
    order = models.PositiveIntegerField(_("order"), default=1, help_text=_("1 is shown first"))
    values = models.JSONField(_("choices"), default=list, blank=True,
                              help_text=_('for list datatypes: [{"key": "1", "name": "…", "name_en": "…"}, …]'))
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["category__code", "order", "code"]
        verbose_name = _("service attribute (Open311)")
        verbose_name_plural = _("service attributes (Open311)")
        constraints = [
            models.UniqueConstraint(fields=["category", "code"], name="open311_attribute_code"),
            models.UniqueConstraint(fields=["category", "order"], name="open311_attribute_order"),
        ]

    def __str__(self) -> str:
        return f"{self.category.code} · {self.code}"

    def clean(self) -> None:
        super().clean()
        if self.order is not None and self.order < 1:
            raise ValidationError({"order": _("The order starts at 1.")})
        if self.datatype in LIST_DATATYPES:
            if not isinstance(self.values, list) or not self.values:
                raise ValidationError({"values": _("A list question needs its choices.")})
            keys = set()
            for v in self.values:
                if not isinstance(v, dict) or not str(v.get("key", "")).strip() or not str(v.get("name", "")).strip():
                    raise ValidationError({"values": _('Every choice needs a "key" and a "name".')})
                if str(v["key"]) in keys:
                    raise ValidationError({"values": _("The key “%(key)s” is used twice.") % {"key": v["key"]}})
                keys.add(str(v["key"]))
        elif self.values:
            raise ValidationError({"values": _("Only list questions have choices.")})

    @property
    def question(self) -> str:
        if prefers_chinese():
            return self.description or self.description_en
        return self.description_en or self.description

    @property
    def hint(self) -> str:
        if prefers_chinese():
            return self.datatype_description or self.datatype_description_en
        return self.datatype_description_en or self.datatype_description

    def choices(self) -> list[dict]:
        """The choices as Open311 shows them: key and the name in the request's language."""
        zh = prefers_chinese()
        out = []
        for v in self.values or []:
            name = (v.get("name") or v.get("name_en")) if zh else (v.get("name_en") or v.get("name"))
            out.append({"key": str(v.get("key")), "name": name or ""})
        return out

    def keys(self) -> set[str]:
        return {str(v.get("key")) for v in self.values or []}


class PartnerUpdate(models.Model):
    """An update a partner posted for a request (servicerequestupdates
    extension). The update itself is a case timeline entry; this row makes the
    partner's ``update_id`` unique per key, so posting it again is harmless."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="updates", verbose_name=_("API key"))
    partner_update_id = models.CharField(_("partner's update id"), max_length=120)
    report = models.ForeignKey("intake.Report", on_delete=models.CASCADE, related_name="+", verbose_name=_("report"))
    entry = models.OneToOneField(
        "cases.TimelineEntry", on_delete=models.CASCADE, related_name="open311_update", verbose_name=_("timeline entry")
    )
    status = models.CharField(_("status given by the partner"), max_length=40)
    updated_at = models.DateTimeField(_("updated (partner's time)"))
    received_at = models.DateTimeField(_("received"))

    class Meta:
        ordering = ["-received_at"]
        verbose_name = _("partner update (Open311)")
        verbose_name_plural = _("partner updates (Open311)")
        constraints = [
            models.UniqueConstraint(fields=["api_key", "partner_update_id"], name="open311_partner_update_once"),
        ]

    @property
    def update_id(self) -> str:
        return f"{self.entry_id}-{self.report_id}"
