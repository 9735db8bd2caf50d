"""Helpers for data that carries both a Chinese and an English name."""

from django.utils.translation import get_language


def prefers_chinese() -> bool:
    return (get_language() or "zh-hans").lower().startswith("zh")


class BilingualName:
    """Mixin for models with ``name`` (zh) and ``name_en`` fields."""

    @property
    def display_name(self) -> str:
        if prefers_chinese():
            return self.name or self.name_en
        return self.name_en or self.name

    def __str__(self) -> str:
        return self.display_name
