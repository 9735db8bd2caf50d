from django.conf import settings
from django.db import migrations


def levels_by_centre(apps, schema_editor):
    """An escalation level now means its centre's level (1 street, 2 district, 3 city:
    ``OPS_CENTRE_LEVELS``), whatever the case's area; it used to be the centre's place
    among those above the case, so a case placed only in a district escalated to it had
    1. Each escalated case gets the level of the centre it was escalated to."""
    Case = apps.get_model("cases", "Case")
    levels = tuple(getattr(settings, "OPS_CENTRE_LEVELS", ("street", "district", "city")))
    for number, key in enumerate(levels, start=1):
        Case.objects.filter(escalated_to__level__key=key).exclude(escalation_level=number).update(
            escalation_level=number)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0008_case_waiting_since_idx"),
        ("areas", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(levels_by_centre, migrations.RunPython.noop, elidable=True),
    ]
