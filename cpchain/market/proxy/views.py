"""The proxy registry. A proxy announces its endpoints with a payload signed by its account
(EIP-191, bound to this chain and contract, single-use nonce, short expiry), so nobody can
list or move someone else's proxy. Deposit and credit come from the chain indexer."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.chain.errors import ChainError
from cpchain.chain.escrow import Deployment
from cpchain.crypto.errors import CryptoError
from cpchain.crypto.signing import verify_payload
from cpchain.market.account.serializers import address_or_error
from cpchain.market.api import ApiError, page_params, page_response
from cpchain.market.proxy.models import ProxyNode, UsedNonce

ANNOUNCE_PURPOSE = "pdash-market-proxy-announce"
LIVE_FOR = timedelta(minutes=5)
PORT_NAMES = ("control", "file", "stream_ws", "stream_http")


class DbNonceStore:
    """cpchain.crypto.signing.NonceStore on the market database, shared by every worker."""

    def check_and_store(self, signer: str, nonce: str, expires: int) -> bool:
        UsedNonce.objects.filter(expires__lt=int(time.time())).delete()
        try:
            UsedNonce.objects.create(signer=signer, nonce=nonce, expires=expires)
        except IntegrityError:
            return False
        return True


class Announcement(serializers.Serializer):
    host = serializers.CharField(max_length=255)
    ports = serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=65535))
    tls_fingerprint = serializers.RegexField(r"^[0-9a-f]{64}$")

    def validate_ports(self, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(PORT_NAMES)
        if unknown or not {"control", "file"} <= set(value):
            raise serializers.ValidationError(f"ports must have control and file, and only {', '.join(PORT_NAMES)}")
        return value


class SignedAnnouncement(serializers.Serializer):
    payload = serializers.DictField()
    signature = serializers.CharField(max_length=132)


class ProxyOut(serializers.Serializer):
    address = serializers.CharField()
    host = serializers.CharField()
    ports = serializers.DictField(child=serializers.IntegerField())
    tls_fingerprint = serializers.CharField()
    deposit = serializers.CharField(help_text="wei")
    credit = serializers.DictField()
    last_seen = serializers.DateTimeField(allow_null=True)
    live = serializers.BooleanField()


def proxy_json(p: ProxyNode) -> dict[str, Any]:
    return {
        "address": p.address,
        "host": p.host,
        "ports": p.ports,
        "tls_fingerprint": p.tls_fingerprint,
        "deposit": str(int(p.deposit)),
        "credit": {"count": p.rating_count, "average": round(p.credit, 3)},
        "last_seen": p.last_seen,
        "live": bool(p.last_seen and p.last_seen >= timezone.now() - LIVE_FOR),
    }


def deployment() -> Deployment:
    try:
        return Deployment.load(settings.PDASH["REGISTRAR"])
    except ChainError:
        raise ApiError(
            "the market is not connected to a deployed contract", code="unavailable", status_code=503
        ) from None


class ProxyListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("live", bool, description="only proxies seen in the last 5 minutes"),
            OpenApiParameter("page", int),
        ],
        responses={200: ProxyOut(many=True)},
    )
    def get(self, request: Request) -> Response:
        page, size = page_params(request)
        qs = ProxyNode.objects.exclude(host="").order_by("-deposit", "-rating_sum", "address")
        if request.query_params.get("live", "") in ("1", "true"):
            qs = qs.filter(last_seen__gte=timezone.now() - LIVE_FOR)
        rows = [proxy_json(p) for p in qs[(page - 1) * size : page * size]]
        return page_response(request, qs.count(), rows, page, size)

    @extend_schema(request=SignedAnnouncement, responses={200: ProxyOut})
    def post(self, request: Request) -> Response:
        """Register or refresh the signer's own entry (a proxy calls this on start and periodically)."""
        envelope = SignedAnnouncement(data=request.data)
        envelope.is_valid(raise_exception=True)
        where = deployment()
        try:
            verified = verify_payload(
                dict(envelope.validated_data),
                purpose=ANNOUNCE_PURPOSE,
                chain_id=where.chain_id,
                contract=where.address,
                nonce_store=DbNonceStore(),
            )
        except CryptoError as exc:
            raise ApiError(f"announcement refused: {exc}", code="bad_signature", status_code=401) from None
        body = Announcement(data=verified.body)
        body.is_valid(raise_exception=True)
        now = timezone.now()
        node, _ = ProxyNode.objects.get_or_create(address=verified.signer)
        node.host = body.validated_data["host"]
        node.ports = body.validated_data["ports"]
        node.tls_fingerprint = body.validated_data["tls_fingerprint"]
        node.registered = node.registered or now
        node.last_seen = now
        node.save()
        return Response(proxy_json(node))


class ProxyDetailView(APIView):
    @extend_schema(responses={200: ProxyOut})
    def get(self, request: Request, address: str) -> Response:
        address = address_or_error(address, "not a valid address", not_found=True)
        return Response(proxy_json(get_object_or_404(ProxyNode.objects.exclude(host=""), address=address)))
