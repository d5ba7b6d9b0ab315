"""Login by signed nonce: the client asks for a challenge, signs it with its account key
(EIP-191), and trades the signature for an expiring token. Nonces are random (secrets),
single use (an atomic update claims them), short-lived and stored in the database."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from cpchain.crypto.errors import CryptoError
from cpchain.crypto.signing import recover_signer
from cpchain.market.account.models import AuthToken, LoginNonce, WalletUser
from cpchain.market.account.serializers import (
    ConfirmRequest,
    LoginChallenge,
    LoginRequest,
    ProfileSerializer,
    PublicUserSerializer,
    TokenReply,
    address_or_error,
)
from cpchain.market.api import ApiError, IsWalletUser, token_digest


def login_message(address: str, nonce: str, expires: int) -> str:
    """The text a wallet signs; it names the market so a signature cannot be reused elsewhere."""
    return (
        "Sign in to the PDash market\n"
        f"market: {settings.PDASH['MARKET_URL']}\n"
        f"address: {address}\n"
        f"nonce: {nonce}\n"
        f"expires: {expires}"
    )


class LoginThrottled(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class LoginView(LoginThrottled):
    @extend_schema(request=LoginRequest, responses={200: LoginChallenge})
    def post(self, request: Request) -> Response:
        data = LoginRequest(data=request.data)
        data.is_valid(raise_exception=True)
        address = data.validated_data["address"]
        now = timezone.now()
        expires = now + timedelta(seconds=settings.PDASH["NONCE_TTL"])
        nonce = secrets.token_urlsafe(24)
        message = login_message(address, nonce, int(expires.timestamp()))
        LoginNonce.objects.filter(expires__lt=now).delete()
        LoginNonce.objects.create(nonce=nonce, address=address, message=message, expires=expires)
        return Response({"nonce": nonce, "message": message, "expires": expires})


class ConfirmView(LoginThrottled):
    @extend_schema(request=ConfirmRequest, responses={200: TokenReply})
    def post(self, request: Request) -> Response:
        data = ConfirmRequest(data=request.data)
        data.is_valid(raise_exception=True)
        address = data.validated_data["address"]
        now = timezone.now()
        row = LoginNonce.objects.filter(nonce=data.validated_data["nonce"], address=address).first()
        if row is None or row.used:
            raise ApiError("unknown or already used nonce; request a new one", code="bad_nonce", status_code=401)
        if row.expires <= now:
            raise ApiError("nonce expired; request a new one", code="bad_nonce", status_code=401)
        try:
            signer = recover_signer(row.message, data.validated_data["signature"])
        except CryptoError:
            signer = ""
        if signer != address:
            raise ApiError("signature does not match the address", code="bad_signature", status_code=401)
        with transaction.atomic():
            # Single use even under concurrent confirms: only one update can flip `used`.
            if LoginNonce.objects.filter(pk=row.pk, used=False).update(used=True) != 1:
                raise ApiError("nonce already used; request a new one", code="bad_nonce", status_code=401)
            user, _ = WalletUser.objects.get_or_create(address=address)
            if user.suspended:
                raise ApiError("this account is suspended", code="forbidden", status_code=403)
            user.last_login = now
            user.save(update_fields=["last_login"])
            token = secrets.token_urlsafe(32)
            expires = now + timedelta(seconds=settings.PDASH["TOKEN_TTL"])
            AuthToken.objects.filter(user=user, expires__lt=now).delete()
            AuthToken.objects.create(key_hash=token_digest(token), user=user, expires=expires)
        return Response({"token": token, "expires": expires, "user": ProfileSerializer(user).data})


class LogoutView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        request.auth.delete()
        return Response(status=204)


class ProfileView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(responses={200: ProfileSerializer})
    def get(self, request: Request) -> Response:
        return Response(ProfileSerializer(request.user).data)

    @extend_schema(request=ProfileSerializer, responses={200: ProfileSerializer})
    def patch(self, request: Request) -> Response:
        # The profile is always the caller's: identity comes from the token, never the body.
        serializer = ProfileSerializer(request.user, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)


class PublicUserView(APIView):
    @extend_schema(responses={200: PublicUserSerializer})
    def get(self, request: Request, address: str) -> Response:
        address = address_or_error(address, "not a valid address", not_found=True)
        user = get_object_or_404(WalletUser, address=address)
        return Response(PublicUserSerializer(user).data)
