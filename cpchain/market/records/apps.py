from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "cpchain.market.records"
    label = "records"
