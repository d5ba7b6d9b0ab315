"""Front-page content. Anyone reads; only market admins (WalletUser.is_admin, granted by the
operator in the Django admin) write. Hot tags combine the curated list with the tags most
used by visible products, so the list is never empty or stale."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.market.api import IsMarketAdmin
from cpchain.market.main.models import Carousel, HotTag, Promotion
from cpchain.market.product.models import ProductTag, Visibility


def http_url(value: str) -> str:
    if value and not value.startswith(("https://", "http://")):
        raise serializers.ValidationError("must be an http(s) URL")
    return value


class CuratedSerializer(serializers.ModelSerializer):
    image = serializers.CharField(max_length=512, allow_blank=True, required=False, validators=[http_url])
    link = serializers.CharField(max_length=512, allow_blank=True, required=False)

    class Meta:
        fields = ["id", "name", "image", "link", "position", "enabled", "created"]
        read_only_fields = ["id", "created"]


class CarouselSerializer(CuratedSerializer):
    class Meta(CuratedSerializer.Meta):
        model = Carousel


class PromotionSerializer(CuratedSerializer):
    class Meta(CuratedSerializer.Meta):
        model = Promotion


class HotTagSerializer(serializers.ModelSerializer):
    image = serializers.CharField(max_length=512, allow_blank=True, required=False, validators=[http_url])

    class Meta:
        model = HotTag
        fields = ["id", "tag", "image", "position", "enabled"]
        read_only_fields = ["id"]


class CuratedViewSet(viewsets.ModelViewSet):
    permission_classes = [IsMarketAdmin]

    def get_queryset(self) -> Any:
        qs = self.serializer_class.Meta.model.objects.all()
        user = self.request.user
        # Admins see disabled entries too, so they can re-enable them.
        return qs if user is not None and getattr(user, "is_admin", False) else qs.filter(enabled=True)


class CarouselViewSet(CuratedViewSet):
    serializer_class = CarouselSerializer


class PromotionViewSet(CuratedViewSet):
    serializer_class = PromotionSerializer


class HotTagViewSet(CuratedViewSet):
    serializer_class = HotTagSerializer


class TrendingTagsView(APIView):
    """Curated hot tags first, then the most used tags of visible products."""

    @extend_schema(parameters=[OpenApiParameter("limit", int)])
    def get(self, request: Request) -> Response:
        try:
            limit = max(1, min(int(request.query_params.get("limit", "20")), 100))
        except ValueError:
            limit = 20
        curated = list(HotTag.objects.filter(enabled=True).order_by("position", "id")[:limit])
        counts = dict(
            ProductTag.objects.filter(product__status=Visibility.VISIBLE)
            .values_list("tag")
            .annotate(n=Count("id"))
            .order_by("-n", "tag")[: limit * 2]
        )
        out: list[dict[str, Any]] = [
            {"tag": t.tag, "image": t.image, "products": counts.get(t.tag, 0), "curated": True} for t in curated
        ]
        seen = {t.tag for t in curated}
        for tag, n in counts.items():
            if len(out) >= limit:
                break
            if tag not in seen:
                out.append({"tag": tag, "image": "", "products": n, "curated": False})
        return Response(out)
