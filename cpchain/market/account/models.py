"""Wallet users (identified by their address), login nonces and tokens, all in the database
so any number of workers agree on them."""

from __future__ import annotations

from django.db import models


class WalletUser(models.Model):
    address = models.CharField(max_length=42, unique=True)  # EIP-55 checksum
    username = models.CharField(max_length=50, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    avatar = models.CharField(max_length=256, blank=True, default="")
    bio = models.CharField(max_length=500, blank=True, default="")
    is_admin = models.BooleanField(default=False)
    suspended = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    last_login = models.DateTimeField(null=True, blank=True)

    is_authenticated = True  # what DRF permissions look at on request.user

    def __str__(self) -> str:
        return self.username or self.address

    @property
    def is_active_account(self) -> bool:
        return not self.suspended


class LoginNonce(models.Model):
    nonce = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=42, db_index=True)
    message = models.TextField()
    expires = models.DateTimeField(db_index=True)
    used = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"nonce for {self.address}"


class AuthToken(models.Model):
    key_hash = models.CharField(max_length=64, unique=True)  # SHA-256 of the token
    user = models.ForeignKey(WalletUser, on_delete=models.CASCADE, related_name="tokens")
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"token of {self.user.address}"
