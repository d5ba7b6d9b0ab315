from django.contrib import admin

from cpchain.market.comment.models import Review


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "product", "order_id", "author", "rating", "created"]
    readonly_fields = ["product", "order_id", "author", "rating", "created", "updated"]
