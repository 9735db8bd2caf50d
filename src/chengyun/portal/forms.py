"""The public report and tracking forms.

The forms only check what a person typed (required, lengths, numbers,
the photo's type); the intake pipeline (:func:`chengyun.intake.services.submit`)
decides everything else and may still refuse with a ``CaseInvalid`` naming a
field, which the view puts back on the matching field here.
"""

from __future__ import annotations

import re
import secrets

from django import forms
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chengyun.areas.locator import in_city
from chengyun.cases.errors import CaseInvalid
from chengyun.intake import numbers
from chengyun.intake.photos import ALLOWED, clean_photo
from chengyun.intake.services import MAX_DESCRIPTION, PHONE_RE
from chengyun.taxonomy.models import Category

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

# ``CaseInvalid.field`` as the intake pipeline names it -> the field on this form.
INTAKE_FIELDS = {
    "description": "description", "title": "description", "category": "category",
    "long": "lon", "lon": "lon", "lat": "lat", "address_string": "address", "address": "address",
    "media": "photo", "photo": "photo", "name": "name", "phone": "phone", "email": "email",
}


def new_token() -> str:
    """A per-form random key: the same form sent twice makes one report."""
    return secrets.token_urlsafe(18)


def category_choices() -> list:
    """Active leaf categories grouped under their parents, in the current language,
    after an option for people who do not know."""
    leaves = Category.objects.reportable().in_groups()
    groups: dict = {}
    for cat in leaves:
        key = cat.parent.picker_label if cat.parent is not None else _("Other")
        groups.setdefault(key, []).append((cat.code, cat.display_name))
    return [("", _("I don't know — let the city decide"))] + list(groups.items())


class ReportForm(forms.Form):
    category = forms.ChoiceField(label=gettext_lazy("What kind of problem is it?"), required=False)
    description = forms.CharField(
        label=gettext_lazy("Describe the problem"), max_length=MAX_DESCRIPTION, strip=True,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=gettext_lazy("What is wrong, and since when? Please do not write your phone number here."),
        error_messages={"required": gettext_lazy("Enter a description of the problem.")},
    )
    address = forms.CharField(
        label=gettext_lazy("Address or place"), max_length=300, required=False,
        help_text=gettext_lazy("For example: the district, street and house number, or a well-known place nearby."),
    )
    lon = forms.FloatField(label=gettext_lazy("Longitude"), required=False, min_value=-180, max_value=180,
                           widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}))
    lat = forms.FloatField(label=gettext_lazy("Latitude"), required=False, min_value=-90, max_value=90,
                           widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}))
    photo = forms.FileField(
        label=gettext_lazy("Photo (optional)"), required=False,
        widget=forms.FileInput(attrs={"accept": ",".join(sorted(ALLOWED.values()))}),
        help_text=gettext_lazy("JPEG, PNG or WebP. If the photo knows where it was taken, we use that place "
                               "when you give no other. We remove all hidden data from the photo before storing it."),
    )
    name = forms.CharField(label=gettext_lazy("Your name"), max_length=100, required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "name"}))
    phone = forms.CharField(label=gettext_lazy("Phone number"), max_length=40, required=False,
                            widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel", "inputmode": "tel"}))
    email = forms.EmailField(label=gettext_lazy("Email address"), max_length=254, required=False,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    notify = forms.BooleanField(label=gettext_lazy("Email me when the status of my report changes"), required=False,
                                widget=forms.CheckboxInput(attrs={"aria-describedby": "notify-hint"}))
    token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].choices = category_choices()
        self.photo_bytes: bytes | None = None
        self.photo_has_position = False
        self.photo_taken_elsewhere = False

    def clean_token(self) -> str:
        token = self.cleaned_data.get("token") or ""
        return token if TOKEN_RE.match(token) else new_token()

    def clean_phone(self) -> str:
        phone = self.cleaned_data.get("phone", "").strip()
        if phone and not PHONE_RE.match(phone):
            raise forms.ValidationError(_("This is not a phone number. Write it as digits, for example 13812345678 or 021-6321 5678 ext. 801."))
        return phone

    def clean_photo(self):
        upload = self.cleaned_data.get("photo")
        if not upload:
            return None
        if upload.size > settings.PHOTO_MAX_BYTES:
            raise forms.ValidationError(
                _("The photo is too large (at most %(mb)s MB).") % {"mb": settings.PHOTO_MAX_BYTES // (1024 * 1024)}
            )
        data = upload.read()
        try:
            cleaned = clean_photo(data, field="photo")  # the pipeline checks again; this shows every error at once
        except CaseInvalid as exc:
            raise forms.ValidationError(exc.message) from None
        self.photo_bytes = data
        self.photo_has_position = cleaned.lon is not None and in_city(cleaned.lon, cleaned.lat)
        self.photo_taken_elsewhere = cleaned.lon is not None and not self.photo_has_position
        return upload

    def clean(self):
        data = super().clean()
        if data.get("notify") and not data.get("email") and "email" not in self.errors:
            self.add_error("email", _("Give an email address to get messages about the report."))
        lon, lat = data.get("lon"), data.get("lat")
        if "lon" in self.errors or "lat" in self.errors:
            return data
        if (lon is None) != (lat is None):
            missing = "lat" if lat is None else "lon"
            self.add_error(missing, _("Give both longitude and latitude, or leave both empty."))
        elif lon is not None and not in_city(lon, lat):
            self.add_error("lat", _("This place is outside the city. Move the pin, or leave it out and write an "
                                    "address."))
        elif lon is None and not data.get("address") and not self.photo_has_position and "photo" not in self.errors:
            # Without a place the report could reach no district: say so now, not after it has waited.
            if self.photo_taken_elsewhere:
                # The reporter may think the photo says where: tell them why it does not.
                self.add_error("address", _("The photo was taken outside the city, so it cannot say where the "
                                            "problem is: write an address, or give its coordinates."))
            else:
                self.add_error("address", _("Say where the problem is: write an address, give its coordinates, or "
                                            "add a photo that knows where it was taken."))
        return data

    def add_intake_error(self, exc: CaseInvalid) -> None:
        self.add_error(INTAKE_FIELDS.get(exc.field or ""), exc.message)


class TrackForm(forms.Form):
    number = forms.CharField(
        label=gettext_lazy("Tracking number"), max_length=40,
        help_text=gettext_lazy("It starts with R, for example R2025011500001232. You find it on the confirmation "
                               "page."),
        error_messages={"required": gettext_lazy("Enter the tracking number of your report.")},
    )

    def clean_number(self) -> str:
        number = numbers.normalise(self.cleaned_data["number"])
        if number is None:
            raise forms.ValidationError(_("A tracking number starts with R followed by 16 digits, "
                                          "for example R2025011500001232."))
        if numbers.misread(number):
            raise forms.ValidationError(_("This number has a wrong digit, or two digits the wrong way round: "
                                          "please check it against your confirmation."))
        return number
