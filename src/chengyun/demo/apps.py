from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "chengyun.demo"
    label = "demo"
