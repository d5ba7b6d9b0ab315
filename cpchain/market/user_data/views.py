"""A wallet's synced data. Every row belongs to the caller (identity from the token; any
owner field in a body is ignored), and every write bumps the caller's sync version in the
same transaction so a wallet can tell when to pull."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import IntegrityError, models, transaction
from django.db.models import F
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.market.api import ApiError, IsWalletUser, page_params, page_response
from cpchain.market.user_data.models import Bookmark, PurchasedFile, SyncVersion, UploadedFile

MARKET_HASH = r"^[A-Za-z0-9_-]{43}$"


class UploadedFileSerializer(serializers.ModelSerializer):
    market_hash = serializers.RegexField(MARKET_HASH, required=False, allow_blank=True)
    data_hash = serializers.RegexField(r"^[0-9a-f]{64}$")

    class Meta:
        model = UploadedFile
        fields = [
            "client_id",
            "name",
            "data_hash",
            "size",
            "remote_type",
            "remote_uri",
            "sealed_key",
            "market_hash",
            "is_published",
            "created",
            "updated",
        ]
        read_only_fields = ["created", "updated"]
        extra_kwargs = {"client_id": {"min_value": 0}, "size": {"min_value": 0}, "sealed_key": {"max_length": 4096}}


class PurchasedFileSerializer(serializers.ModelSerializer):
    market_hash = serializers.RegexField(MARKET_HASH)

    class Meta:
        model = PurchasedFile
        fields = ["order_id", "market_hash", "title", "path", "size", "is_downloaded", "created", "updated"]
        read_only_fields = ["created", "updated"]
        extra_kwargs = {"order_id": {"min_value": 0}, "size": {"min_value": 0}}


class BookmarkSerializer(serializers.ModelSerializer):
    market_hash = serializers.RegexField(MARKET_HASH)

    class Meta:
        model = Bookmark
        fields = ["market_hash", "name", "created"]
        read_only_fields = ["created"]


def bump_version(user: Any) -> int:
    SyncVersion.objects.get_or_create(user=user)
    SyncVersion.objects.filter(user=user).update(version=F("version") + 1)
    return int(SyncVersion.objects.get(user=user).version)


def current_version(user: Any) -> int:
    row = SyncVersion.objects.filter(user=user).first()
    return int(row.version) if row else 0


class OwnedCollection(APIView):
    """List (paginated) and create rows of one model, always for the caller."""

    permission_classes = [IsWalletUser]
    serializer_class: ClassVar[type[serializers.ModelSerializer]]
    key: ClassVar[str]  # the field that identifies a row within the caller's rows
    ordering: ClassVar[tuple[str, ...]] = ("-created", "-id")

    @classmethod
    def model(cls) -> type[models.Model]:
        return cls.serializer_class.Meta.model  # type: ignore[no-any-return]

    def get(self, request: Request) -> Response:
        page, size = page_params(request)
        qs = self.model().objects.filter(user=request.user).order_by(*self.ordering)  # type: ignore[attr-defined]
        rows = self.serializer_class(qs[(page - 1) * size : page * size], many=True).data
        return page_response(request, qs.count(), list(rows), page, size)

    def post(self, request: Request) -> Response:
        serializer = self.serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                serializer.save(user=request.user)
                version = bump_version(request.user)
        except IntegrityError:
            key = serializer.validated_data.get(self.key)
            raise ApiError(f"you already have a row with {self.key} {key}", code="conflict", status_code=409) from None
        return Response({**serializer.data, "version": version}, status=201)


class OwnedItem(APIView):
    """Read, update or delete one of the caller's rows by its key."""

    permission_classes = [IsWalletUser]
    collection: ClassVar[type[OwnedCollection]]

    def _row(self, request: Request, key: Any) -> models.Model:
        row = self.collection.model().objects.filter(user=request.user, **{self.collection.key: key}).first()  # type: ignore[attr-defined]
        if row is None:
            raise ApiError(f"you have no row with {self.collection.key} {key}", code="not_found", status_code=404)
        return row  # type: ignore[no-any-return]

    def get(self, request: Request, key: str) -> Response:
        return Response(self.collection.serializer_class(self._row(request, key)).data)

    def patch(self, request: Request, key: str) -> Response:
        serializer = self.collection.serializer_class(self._row(request, key), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if self.collection.key in serializer.validated_data:
            raise ApiError(f"{self.collection.key} cannot be changed", code="invalid")
        with transaction.atomic():
            serializer.save()
            version = bump_version(request.user)
        return Response({**serializer.data, "version": version})

    def delete(self, request: Request, key: str) -> Response:
        with transaction.atomic():
            self._row(request, key).delete()
            bump_version(request.user)
        return Response(status=204)


class UploadedFiles(OwnedCollection):
    serializer_class = UploadedFileSerializer
    key = "client_id"


class PurchasedFiles(OwnedCollection):
    serializer_class = PurchasedFileSerializer
    key = "order_id"


class Bookmarks(OwnedCollection):
    serializer_class = BookmarkSerializer
    key = "market_hash"


class UploadedFileItem(OwnedItem):
    collection = UploadedFiles


class PurchasedFileItem(OwnedItem):
    collection = PurchasedFiles


class BookmarkItem(OwnedItem):
    collection = Bookmarks


class VersionView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(responses={200: {"type": "object", "properties": {"version": {"type": "integer"}}}})
    def get(self, request: Request) -> Response:
        return Response({"version": current_version(request.user)})


class PullAllView(APIView):
    """Everything a wallet syncs, at one version (read in one transaction)."""

    permission_classes = [IsWalletUser]

    def get(self, request: Request) -> Response:
        with transaction.atomic():
            user = request.user
            return Response(
                {
                    "address": user.address,
                    "version": current_version(user),
                    "uploaded_files": UploadedFileSerializer(UploadedFile.objects.filter(user=user), many=True).data,
                    "purchased_files": PurchasedFileSerializer(PurchasedFile.objects.filter(user=user), many=True).data,
                    "bookmarks": BookmarkSerializer(Bookmark.objects.filter(user=user), many=True).data,
                }
            )
