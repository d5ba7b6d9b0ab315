"""What the chain indexer keeps: every contract event once (its (tx hash, log index) is the
idempotency key), every order with its current state, and the last block handled."""

from __future__ import annotations

from django.db import models

from cpchain.market.records.fields import WeiField


class SyncState(models.Model):
    name = models.CharField(max_length=40, primary_key=True)
    block = models.BigIntegerField()  # the last block fully handled
    # "<chain id>:<address>:<deployment block>" of the contract these records come from; the
    # indexer refuses to mix events of another contract into the same database.
    contract = models.CharField(max_length=100, blank=True, default="")
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}@{self.block}"


class Record(models.Model):
    tx_hash = models.CharField(max_length=66)
    log_index = models.IntegerField()
    block = models.BigIntegerField(db_index=True)
    block_time = models.DateTimeField(null=True)  # UTC
    event = models.CharField(max_length=40)
    order_id = models.BigIntegerField(null=True, db_index=True)
    actor = models.CharField(max_length=42, blank=True, default="", db_index=True)
    args = models.JSONField(default=dict)  # wide integers as decimal strings (rules.json_value)
    sender = models.CharField(max_length=42, blank=True, default="", db_index=True)  # the transaction's from
    fee = WeiField(null=True)  # gas used x effective gas price

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx_hash", "log_index"], name="record_log_unique")]
        ordering = ["-block", "-log_index"]

    def __str__(self) -> str:
        return f"{self.event} in {self.tx_hash}#{self.log_index}"


class ChainOrder(models.Model):
    order_id = models.BigIntegerField(unique=True)
    buyer = models.CharField(max_length=42, db_index=True)
    seller = models.CharField(max_length=42, db_index=True)
    proxy = models.CharField(max_length=42, db_index=True)
    proxy2 = models.CharField(max_length=42)
    price = WeiField()
    fee = WeiField()  # per proxy
    desc_hash = models.CharField(max_length=64)
    market_hash = models.CharField(max_length=43, db_index=True)
    data_hash = models.CharField(max_length=64)
    state = models.SmallIntegerField()
    end_time = models.BigIntegerField(default=0)
    dispute_end = models.BigIntegerField(default=0)
    verdict = models.SmallIntegerField(default=0)  # cpchain.types.Verdict
    placed_block = models.BigIntegerField()
    placed_at = models.DateTimeField(null=True)
    updated_block = models.BigIntegerField()
    updated_at = models.DateTimeField(null=True)
    seller_paid = models.BooleanField(default=False)  # a completed sale: counted once, may be reviewed

    def __str__(self) -> str:
        return f"order {self.order_id}"
