from django.contrib import admin

from cpchain.market.product.models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "market_hash",
        "seller_address",
        "ptype",
        "price",
        "status",
        "sales",
        "rating_avg",
        "created",
    ]
    list_filter = ["status", "ptype", "category"]
    search_fields = ["title", "market_hash", "seller_address"]
    readonly_fields = ["market_hash", "desc_hash", "canonical", "signature", "seller", "seller_address", "data_hash"]
