"""Departments, people and the roles that scope what they see and do."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _

from chengyun.i18n import BilingualName


class Role(models.TextChoices):
    OPERATOR = "operator", _("Operator")            # 受理员
    DISPATCHER = "dispatcher", _("Dispatcher")      # 派遣员
    HANDLER = "handler", _("Handler")               # 处置人员
    INSPECTOR = "inspector", _("Inspector")         # 网格员
    SUPERVISOR = "supervisor", _("Supervisor")      # 督办
    LEADER = "leader", _("Leader")                  # 领导
    ADMIN = "admin", _("Administrator")             # 管理员


class User(AbstractUser):
    display_name = models.CharField(_("display name"), max_length=80, blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.display_name or self.get_username()


class DepartmentKind(BilingualName, models.Model):
    kind = models.SlugField(_("kind"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=60)
    name_en = models.CharField(_("name (English)"), max_length=80)

    class Meta:
        ordering = ["kind"]
        verbose_name = _("department kind")
        verbose_name_plural = _("department kinds")


class Department(BilingualName, models.Model):
    code = models.CharField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=120)
    name_en = models.CharField(_("name (English)"), max_length=160, blank=True)
    kind = models.ForeignKey(DepartmentKind, on_delete=models.PROTECT, related_name="departments", verbose_name=_("kind"))
    area = models.ForeignKey(
        "areas.Area", on_delete=models.PROTECT, related_name="departments", verbose_name=_("area served"),
        help_text=_("the area whose cases this department handles; its level is the department's level"),
    )
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        indexes = [models.Index(fields=["kind", "area"])]


class RoleAssignment(models.Model):
    """A user holds a role within an area subtree and/or for a department."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="roles", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    area = models.ForeignKey(
        "areas.Area", null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("area"),
        help_text=_("the subtree the role covers; empty means the whole city"),
    )
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.PROTECT, related_name="members", verbose_name=_("department"),
        help_text=_("for handlers: the department whose cases they work on"),
    )

    class Meta:
        verbose_name = _("role assignment")
        verbose_name_plural = _("role assignments")
        constraints = [
            models.UniqueConstraint(fields=["user", "role", "area", "department"], name="unique_role_assignment")
        ]

    def __str__(self) -> str:
        where = self.department or self.area or _("whole city")
        return f"{self.user} · {self.get_role_display()} · {where}"


class ApiToken(models.Model):
    """A bearer token for scripts acting as a user (``chengyun create-token``).

    Only a SHA-256 of the token is stored; the token is shown once.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user"))
    name = models.CharField(_("name"), max_length=80)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("prefix"), max_length=8, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
