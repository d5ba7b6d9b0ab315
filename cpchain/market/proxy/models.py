from __future__ import annotations

from django.db import models

from cpchain.market.records.fields import WeiField


class ProxyNode(models.Model):
    address = models.CharField(max_length=42, unique=True)
    host = models.CharField(max_length=255, blank=True, default="")  # blank until it registers
    ports = models.JSONField(default=dict)  # control, file, stream_ws, stream_http
    tls_fingerprint = models.CharField(max_length=64, blank=True, default="")
    deposit = WeiField(default=0)  # wei, from the chain indexer
    rating_count = models.IntegerField(default=0)
    rating_sum = models.IntegerField(default=0)
    registered = models.DateTimeField(null=True)
    last_seen = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return self.address

    @property
    def credit(self) -> float:
        return self.rating_sum / self.rating_count if self.rating_count else 0.0


class UsedNonce(models.Model):
    """Nonces of signed announcements already accepted: a captured announcement cannot be
    replayed to keep a dead proxy listed."""

    signer = models.CharField(max_length=42)
    nonce = models.CharField(max_length=128)
    expires = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["signer", "nonce"], name="proxy_nonce_unique")]

    def __str__(self) -> str:
        return f"{self.signer}:{self.nonce}"
