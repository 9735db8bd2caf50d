"""The vital-signs registry in the admin: sensor kinds, sensors and
indicators are edited here (sensors and indicators through
:mod:`chengyun.signs.services`, so points are located and changes audited);
warnings are read-only apart from the acknowledge action, and so are the
readings counted by source and hour. Readings and
rollups are not registered: they are huge tables, read through the API and
the board."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chengyun.audit.admin import ReadOnlyAdminMixin
from chengyun.cases.errors import CaseError
from chengyun.org import scope

from . import services
from .models import Indicator, Sensor, SensorKind, Source, SourceTally, Warning, from_ms
from .rules import acknowledge


class ServiceForm(forms.ModelForm):
    """A model form whose validation is the service's: a ``CaseError`` from
    the service's clean function becomes an error on its field."""

    service_fields: tuple[str, ...] = ()

    def _service_errors(self, call) -> None:
        try:
            call()
        except CaseError as exc:
            fld = exc.field if exc.field in self.fields else None
            self.add_error(fld, exc.message)

    def service_data(self) -> dict:
        data = {f: self.cleaned_data.get(f) for f in self.service_fields if f in self.fields}
        return {k: ("" if v is None and k in ("unit", "name", "name_en") else v) for k, v in data.items()}


class SensorForm(ServiceForm):
    service_fields = ("name", "kind", "unit", "lon", "lat", "area", "department", "interval_s", "active")

    class Meta:
        model = Sensor
        fields = ["code", "name", "kind", "unit", "lon", "lat", "area", "department", "interval_s", "active"]

    def clean(self):
        data = super().clean()
        if not self.errors:
            if self.instance.pk is None:
                self._service_errors(lambda: services.clean_code(data.get("code")))
            self._service_errors(lambda: services.clean_sensor(self.service_data(),
                                                               instance=self.instance if self.instance.pk else None))
        return data


@admin.register(SensorKind)
class SensorKindAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "name_en", "unit", "theme", "alarm_category"]
    list_filter = ["theme"]
    search_fields = ["code", "name", "name_en"]
    raw_id_fields = ["alarm_category"]


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    form = SensorForm
    list_display = ["code", "name", "kind", "area", "department", "interval_s", "virtual", "active", "last_reading",
                    "generated"]
    list_filter = ["kind", "kind__theme", "active", "virtual", "generated"]
    search_fields = ["code", "name"]
    list_select_related = ["kind", "area", "department"]
    raw_id_fields = ["area", "department"]
    readonly_fields = ["virtual", "generated", "area_path", "last_reading"]

    @admin.display(description=_("latest reading"), ordering="last_ms")
    def last_reading(self, obj: Sensor) -> str:
        if obj.last_ms is None:
            return "—"
        return f"{obj.last_value:.6g} @ {obj.last_ms}"

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "code"] if obj is not None else fields

    def save_model(self, request, obj, form, change):
        data = form.service_data()
        if change:
            services.update_sensor(Sensor.objects.get(pk=obj.pk), by=request.user, **data)
        else:
            obj.pk = services.create_sensor(code=form.cleaned_data["code"], by=request.user, **data).pk
        obj.refresh_from_db()


class IndicatorForm(ServiceForm):
    service_fields = services.INDICATOR_FIELDS

    class Meta:
        model = Indicator
        fields = ["code", "name", "name_en", "theme", "source", "sensor", "inputs", "aggregate", "case_category",
                  "case_area", *services.RULE_FIELDS, "alarm_category", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "sensor" in self.fields:
            self.fields["sensor"].required = False
            self.fields["sensor"].help_text = _("for a computed indicator leave empty: it gets a series of its own")
        if "name_en" in self.fields:
            self.fields["name_en"].required = False  # the Chinese name when empty

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        if self.instance.pk is None:
            self._service_errors(lambda: services.clean_code(data.get("code")))
            source = data.get("source") or Source.SENSOR
            if source == Source.SENSOR and not data.get("sensor"):
                self.add_error("sensor", gettext("Name the sensor whose readings this indicator watches."))
        else:
            source = self.instance.source
        self._service_errors(lambda: services.clean_indicator(
            self.service_data(), source=source, instance=self.instance if self.instance.pk else None))
        return data


@admin.register(Indicator)
class IndicatorAdmin(admin.ModelAdmin):
    form = IndicatorForm
    list_display = ["code", "name", "theme", "source", "sensor", "status", "warn_low", "warn_high", "alarm_low",
                    "alarm_high", "active"]
    list_filter = ["theme", "source", "status", "active", "anomaly"]
    search_fields = ["code", "name", "name_en", "sensor__code"]
    list_select_related = ["sensor"]
    raw_id_fields = ["sensor", "case_category", "case_area", "alarm_category"]
    filter_horizontal = ["inputs"]
    readonly_fields = ["status"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "code", "source", "sensor"] if obj is not None else fields

    def save_model(self, request, obj, form, change):
        data = form.service_data()
        if change:
            ind = Indicator.objects.get(pk=obj.pk)
            services.update_indicator(ind, by=request.user, **data)
        else:
            ind = services.create_indicator(
                code=form.cleaned_data["code"], source=form.cleaned_data["source"],
                sensor=form.cleaned_data.get("sensor"), by=request.user,
                inputs=[s.code for s in form.cleaned_data.get("inputs") or []], **data)
        obj.pk = ind.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        # Inputs are set by the service; the form's many-to-many save would undo a validated change.
        if change and form.instance.source == Source.AGGREGATE:
            services.update_indicator(Indicator.objects.get(pk=form.instance.pk), by=request.user,
                                      inputs=[s.code for s in form.cleaned_data.get("inputs") or []])
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


@admin.register(Warning)
class WarningAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "indicator", "rule", "level", "started_at", "ended_at", "peak_value", "acknowledged_by",
                    "acknowledged_at", "case", "generated"]
    list_filter = ["level", "rule", "generated", "indicator__theme"]
    search_fields = ["indicator__code", "case__number"]
    list_select_related = ["indicator", "indicator__sensor", "acknowledged_by", "case"]
    actions = ["acknowledge_selected"]

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.is_superuser or bool(services.ACK_ROLES & scope.roles_of(request.user))

    @admin.action(description=_("Acknowledge the selected warnings"), permissions=["acknowledge"])
    def acknowledge_selected(self, request, queryset):
        done = skipped = 0
        for w in queryset.select_related("indicator", "indicator__sensor"):
            if w.acknowledged_at is not None or not services.may_acknowledge(request.user, w):
                skipped += 1
                continue
            acknowledge(w, by=request.user, note=gettext("acknowledged in the admin"))
            done += 1
        self.message_user(request, gettext("%(done)s acknowledged, %(skipped)s skipped (acknowledged already or "
                                           "outside your area).") % {"done": done, "skipped": skipped},
                          messages.SUCCESS if done else messages.WARNING)


@admin.register(SourceTally)
class SourceTallyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["source", "hour", "batches", "received", "stored", "duplicates", "refused", "last_refusal"]
    list_filter = ["source"]
    search_fields = ["source", "last_refusal"]

    @admin.display(description=_("hour"), ordering="hour_ms")
    def hour(self, obj):
        return from_ms(obj.hour_ms)
