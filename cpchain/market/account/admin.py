from django.contrib import admin

from cpchain.market.account.models import WalletUser


@admin.register(WalletUser)
class WalletUserAdmin(admin.ModelAdmin):
    list_display = ["address", "username", "is_admin", "suspended", "created", "last_login"]
    list_filter = ["is_admin", "suspended"]
    search_fields = ["address", "username"]
    readonly_fields = ["address", "created", "last_login"]
