from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Area
from .services import bump_area_version


@receiver(post_save, sender=Area, dispatch_uid="area_saved_bump")
@receiver(post_delete, sender=Area, dispatch_uid="area_deleted_bump")
def _area_changed(sender, **kwargs):
    if not kwargs.get("raw"):
        bump_area_version()
