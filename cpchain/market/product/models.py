"""A product row mirrors one signed ProductDescription (cpchain.types) plus the market's own
bookkeeping: visibility, cover image, sales and rating summary (kept by the indexer and by
reviews, never by clients)."""

from __future__ import annotations

from enum import IntEnum

from django.db import models

from cpchain.market.account.models import WalletUser
from cpchain.market.records.fields import WeiField


class Visibility(IntEnum):
    VISIBLE = 0
    HIDDEN = 1
    DELETED = 2
    SUPERSEDED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


VISIBILITY_CHOICES = [(v.value, v.label) for v in Visibility]


class Product(models.Model):
    market_hash = models.CharField(max_length=43, unique=True)
    desc_hash = models.CharField(max_length=64, unique=True)  # hex keccak of `canonical`
    seller = models.ForeignKey(WalletUser, on_delete=models.PROTECT, related_name="products")
    seller_address = models.CharField(max_length=42, db_index=True)
    title = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    ptype = models.CharField(max_length=10, db_index=True)
    price = WeiField()  # exact on SQLite too (a zero-padded string there), so sorts and ranges are exact
    category = models.CharField(max_length=100, blank=True, default="", db_index=True)
    tags_text = models.CharField(max_length=500, blank=True, default="")  # space-joined, for full-text
    data_hash = models.CharField(max_length=64)
    storage_type = models.CharField(max_length=32)
    size = models.BigIntegerField(default=0)
    start_date = models.BigIntegerField(default=0)
    end_date = models.BigIntegerField(default=0)
    canonical = models.TextField()  # the exact signed JSON
    signature = models.CharField(max_length=132)
    status = models.SmallIntegerField(choices=VISIBILITY_CHOICES, default=Visibility.VISIBLE)
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cover = models.CharField(max_length=100, blank=True, default="")  # file name under MEDIA_ROOT/covers
    created = models.DateTimeField(auto_now_add=True)
    sales = models.IntegerField(default=0)
    rating_count = models.IntegerField(default=0)
    rating_sum = models.IntegerField(default=0)
    rating_avg = models.FloatField(default=0.0)

    class Meta:
        indexes = [
            models.Index(fields=["status", "created"]),
            models.Index(fields=["status", "price"]),
            models.Index(fields=["status", "sales"]),
            # The rating sort (average, then count, then newest) read in index order.
            models.Index(fields=["status", "rating_avg", "rating_count"]),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.market_hash})"

    @property
    def tags(self) -> list[str]:
        return list(self.tag_rows.order_by("position").values_list("tag", flat=True))


class ProductTag(models.Model):
    """One row per tag, so tag filters are exact matches on an index, not substring scans."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="tag_rows")
    tag = models.CharField(max_length=40, db_index=True)
    position = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "tag"], name="product_tag_unique")]

    def __str__(self) -> str:
        return self.tag


class FollowedTag(models.Model):
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="followed_tags")
    tag = models.CharField(max_length=40)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tag"], name="followed_tag_unique")]

    def __str__(self) -> str:
        return self.tag


class FollowedSeller(models.Model):
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="followed_sellers")
    seller_address = models.CharField(max_length=42)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "seller_address"], name="followed_seller_unique")]

    def __str__(self) -> str:
        return self.seller_address
