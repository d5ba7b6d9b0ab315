from django.apps import AppConfig


class UserDataConfig(AppConfig):
    name = "cpchain.market.user_data"
    label = "user_data"
