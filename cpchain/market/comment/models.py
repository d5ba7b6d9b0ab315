from __future__ import annotations

from django.db import models

from cpchain.market.account.models import WalletUser
from cpchain.market.product.models import Product


class Review(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="reviews")
    order_id = models.BigIntegerField(unique=True)  # one review per completed purchase
    author = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="reviews")
    rating = models.SmallIntegerField()
    content = models.CharField(max_length=1000, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(rating__gte=1, rating__lte=5), name="rating_1_to_5")]
        indexes = [models.Index(fields=["product", "-created"])]

    def __str__(self) -> str:
        return f"{self.rating}* on {self.product_id} by {self.author_id}"
