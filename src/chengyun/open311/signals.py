"""A service or its attributes saved in this process are served at once here
(other server processes see the change within ``services.RECENT_SECONDS``)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from chengyun.taxonomy.models import Category

from .models import ServiceAttribute
from .services import recent_services


@receiver(post_save, sender=Category, dispatch_uid="open311_category_saved")
@receiver(post_delete, sender=Category, dispatch_uid="open311_category_deleted")
@receiver(post_save, sender=ServiceAttribute, dispatch_uid="open311_attribute_saved")
@receiver(post_delete, sender=ServiceAttribute, dispatch_uid="open311_attribute_deleted")
def _services_changed(**_kwargs) -> None:
    recent_services.clear()


@receiver(post_delete, sender=ServiceAttribute, dispatch_uid="open311_attribute_deleted_changes_service")
def _attribute_deleted(instance, **_kwargs) -> None:
    """A deleted attribute changes its service's definition: the discovery
    changeset (the latest change of a category or an attribute) must move."""
    Category.objects.filter(pk=instance.category_id).update(updated_at=timezone.now())
