from __future__ import annotations

from django.db import models

from cpchain.market.account.models import WalletUser


class UploadedFile(models.Model):
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="uploads")
    client_id = models.BigIntegerField()  # the wallet's local id
    name = models.CharField(max_length=256)
    data_hash = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    remote_type = models.CharField(max_length=32)
    remote_uri = models.CharField(max_length=4096)  # the storage locator (JSON)
    sealed_key = models.TextField(blank=True, default="")  # data key sealed by the wallet; opaque here
    market_hash = models.CharField(max_length=43, blank=True, default="")
    is_published = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "client_id"], name="upload_client_unique")]

    def __str__(self) -> str:
        return self.name


class PurchasedFile(models.Model):
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="purchases")
    order_id = models.BigIntegerField()
    market_hash = models.CharField(max_length=43)
    title = models.CharField(max_length=256)
    path = models.CharField(max_length=1024, blank=True, default="")
    size = models.BigIntegerField(default=0)
    is_downloaded = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "order_id"], name="purchase_order_unique")]

    def __str__(self) -> str:
        return self.title


class Bookmark(models.Model):
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="bookmarks")
    market_hash = models.CharField(max_length=43)
    name = models.CharField(max_length=100, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "market_hash"], name="bookmark_unique")]

    def __str__(self) -> str:
        return self.name or self.market_hash


class SyncVersion(models.Model):
    user = models.OneToOneField(WalletUser, on_delete=models.CASCADE, primary_key=True, related_name="sync")
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"v{self.version}"
