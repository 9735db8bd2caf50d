"""Answers to a service's extra questions (``attribute[code]`` and
``attribute[code][]``), checked against its service definition.

Answers to questions the service does not ask, and to questions that ask
nothing (``variable`` false), are ignored; every other problem is an
:class:`AttributeInvalid` naming ``attribute[code]``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _

from .formats import parse_w3c
from .models import Datatype, ServiceAttribute

FIELD = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
MAX_STRING = 1000
MAX_TEXT = 4000


class AttributeInvalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.field = f"attribute[{code}]"
        self.message = message


def collect(params) -> dict[str, list[str]]:
    """``attribute[code]=v`` / ``attribute[code][]=v1&…`` (form) or
    ``{"attribute": {"code": v | [v1, …]}}`` (JSON) -> ``{code: [values]}``."""
    out: dict[str, list[str]] = {}
    for name in params.keys():
        m = FIELD.match(name)
        if m:
            out.setdefault(m.group(1), []).extend(str(v) for v in params.getlist(name))
    nested = params.nested("attribute")
    if isinstance(nested, dict):
        for code, value in nested.items():
            values = value if isinstance(value, list) else [value]
            out.setdefault(str(code), []).extend("" if v is None else str(v) for v in values)
    return out


def _number(code: str, text: str):
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise AttributeInvalid(code, _("attribute[%(code)s] must be a number.") % {"code": code}) from None
    if not value.is_finite():
        raise AttributeInvalid(code, _("attribute[%(code)s] must be a number.") % {"code": code})
    number = float(value)
    if not math.isfinite(number):
        raise AttributeInvalid(code, _("attribute[%(code)s] must be a number.") % {"code": code})
    return int(value) if value == value.to_integral_value() and "." not in text and "e" not in text.lower() else number


def clean(definition: list[ServiceAttribute], given: dict[str, list[str]]) -> dict:
    """The answers to store (``{code: value or [values]}``); raises
    :class:`AttributeInvalid` for the first attribute that is wrong."""
    out: dict = {}
    for attr in definition:
        if not attr.variable:
            continue
        code = attr.code
        values = [v.strip() for v in given.get(code, []) if v is not None and v.strip() != ""]
        if not values:
            if attr.required:
                raise AttributeInvalid(code, _("attribute[%(code)s] is required: %(question)s")
                                       % {"code": code, "question": attr.question})
            continue
        if attr.datatype == Datatype.MULTIVALUELIST:
            allowed = attr.keys()
            bad = [v for v in values if v not in allowed]
            if bad:
                raise AttributeInvalid(code, _("attribute[%(code)s]: “%(value)s” is not one of the keys %(keys)s.")
                                       % {"code": code, "value": bad[0], "keys": ", ".join(sorted(allowed))})
            out[code] = list(dict.fromkeys(values))
            continue
        if len(values) > 1:
            raise AttributeInvalid(code, _("attribute[%(code)s] takes one value.") % {"code": code})
        value = values[0]
        if attr.datatype == Datatype.SINGLEVALUELIST:
            allowed = attr.keys()
            if value not in allowed:
                raise AttributeInvalid(code, _("attribute[%(code)s]: “%(value)s” is not one of the keys %(keys)s.")
                                       % {"code": code, "value": value, "keys": ", ".join(sorted(allowed))})
            out[code] = value
        elif attr.datatype == Datatype.NUMBER:
            out[code] = _number(code, value)
        elif attr.datatype == Datatype.DATETIME:
            when = parse_w3c(value)
            if when is None:
                raise AttributeInvalid(code, _("attribute[%(code)s] must be a date and time like 2024-05-01T09:30:00+08:00.")
                                       % {"code": code})
            out[code] = when.isoformat()
        elif attr.datatype == Datatype.STRING:
            if "\n" in value or "\r" in value:
                raise AttributeInvalid(code, _("attribute[%(code)s] must be one line.") % {"code": code})
            if len(value) > MAX_STRING:
                raise AttributeInvalid(code, _("attribute[%(code)s] is too long (at most %(n)s characters).")
                                       % {"code": code, "n": MAX_STRING})
            out[code] = value
        else:  # text
            if len(value) > MAX_TEXT:
                raise AttributeInvalid(code, _("attribute[%(code)s] is too long (at most %(n)s characters).")
                                       % {"code": code, "n": MAX_TEXT})
            out[code] = value
    return out


def definition(category) -> list[ServiceAttribute]:
    return list(ServiceAttribute.objects.filter(category=category).order_by("order", "code"))


def definitions() -> dict[int, list[ServiceAttribute]]:
    """Every service's attributes (category id -> its :func:`definition`), in one query."""
    out: dict[int, list[ServiceAttribute]] = {}
    for a in ServiceAttribute.objects.order_by("category_id", "order", "code"):
        out.setdefault(a.category_id, []).append(a)
    return out
