from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "cpchain.market.proxy"
    label = "proxy"
