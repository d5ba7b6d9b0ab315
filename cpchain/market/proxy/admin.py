from django.contrib import admin

from cpchain.market.proxy.models import ProxyNode


@admin.register(ProxyNode)
class ProxyNodeAdmin(admin.ModelAdmin):
    list_display = ["address", "host", "deposit", "rating_count", "last_seen"]
    readonly_fields = ["address", "deposit", "rating_count", "rating_sum", "registered", "last_seen"]
