from django.apps import AppConfig


class MainConfig(AppConfig):
    name = "cpchain.market.main"
    label = "main"
