from __future__ import annotations

from typing import Any

from eth_utils.address import is_hex_address, to_checksum_address
from rest_framework import serializers

from cpchain.market.account.models import WalletUser
from cpchain.market.api import ApiError


def checksum_address(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or not is_hex_address(value):
        raise serializers.ValidationError("must be a 0x-prefixed 20-byte hex address")
    return str(to_checksum_address(value))


def address_or_error(value: Any, message: str, *, not_found: bool = False) -> str:
    """`checksum_address` for a view: a malformed address is the API's one-line error
    (404 where the address names the resource asked for)."""
    try:
        return checksum_address(value)
    except serializers.ValidationError:
        if not_found:
            raise ApiError(message, code="not_found", status_code=404) from None
        raise ApiError(message) from None


class AddressField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 42)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        return checksum_address(super().to_internal_value(data))


class LoginRequest(serializers.Serializer):
    address = AddressField()


class LoginChallenge(serializers.Serializer):
    nonce = serializers.CharField()
    message = serializers.CharField(help_text="sign this exact text with personal_sign (EIP-191)")
    expires = serializers.DateTimeField()


class ConfirmRequest(serializers.Serializer):
    address = AddressField()
    nonce = serializers.CharField(max_length=64)
    signature = serializers.RegexField(r"^0x[0-9a-fA-F]{130}$", help_text="65-byte EIP-191 signature")


class ProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = WalletUser
        fields = ["address", "username", "email", "avatar", "bio", "is_admin", "created", "last_login"]
        read_only_fields = ["address", "is_admin", "created", "last_login"]

    def validate_avatar(self, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("avatar must be an http(s) URL")
        return value

    def validate_email(self, value: str) -> str:
        if value:
            serializers.EmailField().run_validation(value)
        return value


class PublicUserSerializer(serializers.ModelSerializer):
    class Meta:
        model = WalletUser
        fields = ["address", "username", "avatar", "bio", "created"]


class TokenReply(serializers.Serializer):
    token = serializers.CharField()
    expires = serializers.DateTimeField()
    user = ProfileSerializer()
