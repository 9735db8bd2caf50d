"""Which console pages the signed-in user's roles open (for the top navigation)."""

from __future__ import annotations

from django import template

from chengyun.org import scope
from chengyun.org.models import Role

register = template.Library()

# Who gets the vital signs board (城市体征) in the top bar.
SIGNS_ROLES = {Role.LEADER, Role.SUPERVISOR, Role.DISPATCHER, Role.OPERATOR, Role.ADMIN}


@register.simple_tag(takes_context=True)
def console_nav(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    roles = scope.roles_of(user) if user is not None and user.is_authenticated else set()
    return {
        "create": bool({Role.OPERATOR, Role.DISPATCHER, Role.INSPECTOR, Role.ADMIN} & roles),  # on every page
        "hotline": bool({Role.OPERATOR, Role.ADMIN} & roles),
        "inspect": bool({Role.INSPECTOR, Role.ADMIN} & roles),
        "signs": bool(SIGNS_ROLES & roles),
        # The API's documentation: for the desks that work with other systems, not for
        # field staff on a phone (the API itself does not depend on this link).
        "api": bool(roles - {Role.INSPECTOR, Role.HANDLER}) or getattr(user, "is_superuser", False),
    }
