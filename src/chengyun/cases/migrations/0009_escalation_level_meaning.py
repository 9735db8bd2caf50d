from django.conf import settings
from django.db import migrations


def levels_by_centre(apps, schema_editor):
    """An escalation level now means its centre's level (1 street, 2 district, 3 city:
    ``OPS_CENTRE_LEVELS``, counted from its top), whatever the case's area; it used to be the centre's place
    among those above the case, so a case placed only in a district escalated to it had
    1. Each escalated case gets the level of the centre it was escalated to."""
    Case = apps.get_model("cases", "Case")
    levels = tuple(getattr(settings, "OPS_CENTRE_LEVELS", ("street", "district", "city")))
    top = 3  # counted from the top of the list, as cases.services.level_number counts
    for index, key in enumerate(levels):
        number = top - (len(levels) - 1 - index)
        Case.objects.filter(escalated_to__level__key=key).exclude(escalation_level=number).update(
            escalation_level=max(number, 1))
    # A root whose level is not listed (the city's fallback) is the top.
    Case.objects.filter(escalated_to__parent__isnull=True).exclude(escalated_to__level__key__in=levels).update(
        escalation_level=top)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0008_case_waiting_since_idx"),
        ("areas", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(levels_by_centre, migrations.RunPython.noop, elidable=True),
    ]
