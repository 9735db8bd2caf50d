from django.db import migrations, models


class Migration(migrations.Migration):
    """Duplicate candidates back in the queue (reopened, returned) are looked up by
    when they came back; most cases have no such time, so the index holds only those
    that have one."""

    dependencies = [
        ("cases", "0007_case_waiting_since"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="case",
            index=models.Index(condition=models.Q(("waiting_since__isnull", False)), fields=["waiting_since"],
                               name="cases_case_waiting_since_idx"),
        ),
    ]
