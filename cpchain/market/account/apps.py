from django.apps import AppConfig


class AccountConfig(AppConfig):
    name = "cpchain.market.account"
    label = "account"
