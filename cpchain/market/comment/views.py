"""Reviews: only the buyer of a completed purchase (seller paid, per the chain indexer) may
review, once per order, rating 1-5; the product's rating summary changes in the same
transaction as the review, so count, sum and average always agree."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.market.api import ApiError, IsWalletUser, page_params, page_response
from cpchain.market.comment.models import Review
from cpchain.market.product.models import Product, Visibility
from cpchain.market.product.views import reindex_on_commit
from cpchain.market.records.queries import may_review


class ReviewRequest(serializers.Serializer):
    market_hash = serializers.CharField(max_length=43)
    order_id = serializers.IntegerField(min_value=0, max_value=2**63 - 1)
    rating = serializers.IntegerField(min_value=1, max_value=5)
    content = serializers.CharField(max_length=1000, allow_blank=True, required=False, default="")


class ReviewUpdate(serializers.Serializer):
    rating = serializers.IntegerField(min_value=1, max_value=5, required=False)
    content = serializers.CharField(max_length=1000, allow_blank=True, required=False)


class ReviewOut(serializers.Serializer):
    id = serializers.IntegerField()
    market_hash = serializers.CharField()
    order_id = serializers.IntegerField()
    author = serializers.CharField()
    author_name = serializers.CharField()
    rating = serializers.IntegerField()
    content = serializers.CharField()
    created = serializers.DateTimeField()
    updated = serializers.DateTimeField()


class Summary(serializers.Serializer):
    market_hash = serializers.CharField()
    count = serializers.IntegerField()
    average = serializers.FloatField()


def review_json(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "market_hash": r.product.market_hash,
        "order_id": r.order_id,
        "author": r.author.address,
        "author_name": r.author.username,
        "rating": r.rating,
        "content": r.content,
        "created": r.created,
        "updated": r.updated,
    }


def _apply_rating(product_id: int, added: int, removed: int, count_delta: int) -> None:
    product = Product.objects.select_for_update().get(pk=product_id)
    product.rating_count += count_delta
    product.rating_sum += added - removed
    product.rating_avg = product.rating_sum / product.rating_count if product.rating_count else 0.0
    product.save(update_fields=["rating_count", "rating_sum", "rating_avg"])
    reindex_on_commit(product)  # the rating sort of an external index must follow


def visible_product(market_hash: str) -> Product:
    product = Product.objects.filter(market_hash=market_hash).exclude(status=Visibility.DELETED).first()
    if product is None:
        raise ApiError("no such product", code="not_found", status_code=404)
    return product


class ReviewListView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsWalletUser()] if self.request.method == "POST" else []

    @extend_schema(
        parameters=[OpenApiParameter("market_hash", str, required=True), OpenApiParameter("page", int)],
        responses={200: ReviewOut(many=True)},
    )
    def get(self, request: Request) -> Response:
        market_hash = request.query_params.get("market_hash", "")
        if not market_hash:
            raise ApiError("market_hash is required")
        product = visible_product(market_hash)
        page, size = page_params(request)
        qs = Review.objects.filter(product=product).select_related("author", "product").order_by("-created", "-id")
        rows = [review_json(r) for r in qs[(page - 1) * size : page * size]]
        return page_response(request, qs.count(), rows, page, size)

    @extend_schema(request=ReviewRequest, responses={201: ReviewOut})
    def post(self, request: Request) -> Response:
        body = ReviewRequest(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        product = visible_product(data["market_hash"])
        order = may_review(request.user.address, data["order_id"])
        if order is None or order.market_hash != product.market_hash:
            raise ApiError(
                "only the buyer of a completed purchase of this product may review it",
                code="forbidden",
                status_code=403,
            )
        try:
            with transaction.atomic():
                review = Review.objects.create(
                    product=product,
                    order_id=order.order_id,
                    author=request.user,
                    rating=data["rating"],
                    content=data["content"],
                )
                _apply_rating(product.pk, data["rating"], 0, 1)
        except IntegrityError:
            raise ApiError("this purchase has already been reviewed", code="conflict", status_code=409) from None
        return Response(review_json(review), status=201)


class ReviewDetailView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(request=ReviewUpdate, responses={200: ReviewOut})
    def patch(self, request: Request, review_id: int) -> Response:
        body = ReviewUpdate(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            review = get_object_or_404(
                Review.objects.select_for_update().select_related("product", "author"),
                pk=review_id,
                author=request.user,
            )
            if "rating" in body.validated_data:
                _apply_rating(review.product_id, body.validated_data["rating"], review.rating, 0)
                review.rating = body.validated_data["rating"]
            if "content" in body.validated_data:
                review.content = body.validated_data["content"]
            review.save()
        return Response(review_json(review))


class SummaryView(APIView):
    @extend_schema(parameters=[OpenApiParameter("market_hash", str, required=True)], responses={200: Summary})
    def get(self, request: Request) -> Response:
        market_hash = request.query_params.get("market_hash", "")
        if not market_hash:
            raise ApiError("market_hash is required")
        product = get_object_or_404(Product, market_hash=market_hash)
        return Response(
            {"market_hash": product.market_hash, "count": product.rating_count, "average": round(product.rating_avg, 3)}
        )
