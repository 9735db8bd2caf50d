from django.db import migrations, models

WAITING = ("new", "accepted", "reopened")


def since_last_return(apps, schema_editor):
    """A case waiting again for a dispatcher (returned, recalled, reopened,
    unmerged) waits since the timeline entry that brought it back; one that has
    waited since its creation keeps the field empty (its creation counts)."""
    Case = apps.get_model("cases", "Case")
    Entry = apps.get_model("cases", "TimelineEntry")
    back = (Entry.objects.filter(case__status__in=WAITING, to_status__in=WAITING)
            .exclude(from_status__in=WAITING).exclude(from_status="").order_by("case_id", "at", "pk")
            .values_list("case_id", "at"))
    latest = dict(back.iterator(chunk_size=2000))  # the last per case wins
    for case_id, at in latest.items():
        Case.objects.filter(pk=case_id).update(waiting_since=at)


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0006_extension_withdrawn"),
    ]

    operations = [
        migrations.AddField(
            model_name="case",
            name="waiting_since",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="When the case last came back to wait for a dispatcher (returned, recalled, reopened, "
                          "unmerged); empty: since it was created.",
                verbose_name="waiting for dispatch since"),
        ),
        migrations.RunPython(since_last_return, migrations.RunPython.noop),
    ]
