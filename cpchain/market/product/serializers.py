from __future__ import annotations

from typing import Any

from rest_framework import serializers

from cpchain.market.product.models import Product, Visibility


class PublishRequest(serializers.Serializer):
    product = serializers.DictField(help_text="the ProductDescription fields (cpchain.types), exactly as signed")
    signature = serializers.RegexField(r"^0x[0-9a-fA-F]{130}$", help_text="EIP-191 signature by the seller")


class RatingSummary(serializers.Serializer):
    count = serializers.IntegerField()
    average = serializers.FloatField()


class ProductOut(serializers.Serializer):
    """A product as every endpoint returns it (built by `product_json`, documented here)."""

    market_hash = serializers.CharField()
    desc_hash = serializers.CharField()
    seller = serializers.CharField()
    seller_name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    ptype = serializers.CharField()
    price = serializers.CharField(help_text="wei, as a decimal string")
    category = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    data_hash = serializers.CharField()
    storage_type = serializers.CharField()
    size = serializers.IntegerField()
    start_date = serializers.IntegerField()
    end_date = serializers.IntegerField()
    status = serializers.CharField()
    superseded_by = serializers.CharField(allow_null=True)
    cover_url = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
    sales = serializers.IntegerField()
    rating = RatingSummary()
    canonical = serializers.CharField(help_text="the signed canonical JSON")
    signature = serializers.CharField()


class ProductPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = ProductOut(many=True)


class TagRequest(serializers.Serializer):
    tag = serializers.CharField(max_length=40)


class SellerRequest(serializers.Serializer):
    seller = serializers.CharField(max_length=42)


def split_tags(tags_text: str) -> list[str]:
    return tags_text.split(", ") if tags_text else []


def product_json(p: Product, seller_name: str | None = None) -> dict[str, Any]:
    return {
        "market_hash": p.market_hash,
        "desc_hash": p.desc_hash,
        "seller": p.seller_address,
        "seller_name": seller_name if seller_name is not None else p.seller.username,
        "title": p.title,
        "description": p.description,
        "ptype": p.ptype,
        "price": str(int(p.price)),  # WeiField: exact on every database
        "category": p.category,
        "tags": split_tags(p.tags_text),
        "data_hash": p.data_hash,
        "storage_type": p.storage_type,
        "size": p.size,
        "start_date": p.start_date,
        "end_date": p.end_date,
        "status": Visibility(p.status).label,
        "superseded_by": p.superseded_by.market_hash if p.superseded_by_id and p.superseded_by else None,
        "cover_url": f"/product/v1/products/{p.market_hash}/cover/" if p.cover else None,
        "created": p.created.isoformat().replace("+00:00", "Z"),
        "sales": p.sales,
        "rating": {"count": p.rating_count, "average": round(p.rating_avg, 3)},
        "canonical": p.canonical,
        "signature": p.signature,
    }
