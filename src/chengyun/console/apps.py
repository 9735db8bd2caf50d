from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "chengyun.console"
    label = "console"
