from __future__ import annotations

import hashlib
import secrets

from django.db import transaction

from chengyun.audit.services import record

from .models import ApiToken, User


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_token(user: User, name: str, *, by=None) -> tuple[ApiToken, str]:
    key = "cy_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_hash=_digest(key), prefix=key[3:11])
    record("token.create", actor=by or user, obj=token, data={"user": user.get_username(), "name": name})
    return token, key


def user_for_token(key: str) -> User | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_digest(key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    return token.user if token else None
