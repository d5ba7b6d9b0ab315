"""Publishing and managing signed listings, covers, follows, search and recommendations.

A listing is accepted only when its description is valid, it is signed by its seller and
that seller is the caller. Owners hide, show, replace (a new signed version) or delete their
listings; nobody else can. Hidden, deleted and superseded listings never appear in lists.
"""

from __future__ import annotations

import io
import logging
import secrets
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q, QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image, UnidentifiedImageError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpchain.crypto.errors import CryptoError
from cpchain.crypto.signing import product_signer
from cpchain.market.account.models import WalletUser
from cpchain.market.account.serializers import address_or_error
from cpchain.market.api import ApiError, IsWalletUser, page_params, page_response
from cpchain.market.product.models import FollowedSeller, FollowedTag, Product, ProductTag, Visibility
from cpchain.market.product.serializers import (
    ProductOut,
    ProductPage,
    PublishRequest,
    SellerRequest,
    TagRequest,
    product_json,
)
from cpchain.market.search import SORTS, SearchError, SearchQuery, get_backend
from cpchain.types import InvalidProduct, ProductDescription

log = logging.getLogger(__name__)
COVER_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_COVER_PIXELS = 4096 * 4096


def reindex_on_commit(product: Product) -> None:
    """Keep the search index in step with every write, once the write is durable. The write
    stands even if the search service is down (`market-manage reindex` repairs the index)."""

    def index() -> None:
        try:
            get_backend().index(product)
        except SearchError as exc:
            log.warning("search index not updated for %s: %s", product.market_hash, exc)

    transaction.on_commit(index)


def verified_description(request: Request) -> tuple[ProductDescription, str]:
    body = PublishRequest(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        desc = ProductDescription.from_dict(body.validated_data["product"])
    except InvalidProduct as exc:
        raise ApiError(str(exc), code="invalid_product") from None
    except TypeError:
        raise ApiError("product has a field of the wrong type", code="invalid_product") from None
    if desc.seller.lower() != request.user.address.lower():
        raise ApiError("the product's seller is not the logged-in account", code="forbidden", status_code=403)
    signature = body.validated_data["signature"]
    try:
        signer = product_signer(desc.canonical(), signature)
    except CryptoError:
        signer = ""
    if signer.lower() != desc.seller.lower():
        raise ApiError("signature is not the seller's signature over this product", code="bad_signature")
    return desc, signature


def save_description(desc: ProductDescription, signature: str, seller: WalletUser, cover: str = "") -> Product:
    product = Product(
        market_hash=desc.market_hash(),
        desc_hash=desc.desc_hash().hex(),
        seller=seller,
        seller_address=seller.address,
        title=desc.title,
        description=desc.description,
        ptype=str(desc.ptype),
        price=Decimal(desc.price),
        category=desc.category,
        tags_text=", ".join(desc.tags),
        data_hash=desc.data_hash,
        storage_type=desc.storage_type,
        size=desc.size,
        start_date=desc.start_date,
        end_date=desc.end_date,
        canonical=desc.canonical().decode(),
        signature=signature,
        cover=cover,
    )
    try:
        with transaction.atomic():
            product.save()
            ProductTag.objects.bulk_create(
                ProductTag(product=product, tag=tag, position=i) for i, tag in enumerate(desc.tags)
            )
    except IntegrityError:
        raise ApiError("this product is already published", code="conflict", status_code=409) from None
    reindex_on_commit(product)
    return product


def own_product(request: Request, market_hash: str) -> Product:
    """The caller's product, whatever its visibility; 404 for someone else's."""
    return get_object_or_404(Product.objects.select_related("seller"), market_hash=market_hash, seller=request.user)


class ProductListView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsWalletUser()] if self.request.method == "POST" else []

    @extend_schema(request=PublishRequest, responses={201: ProductOut})
    def post(self, request: Request) -> Response:
        desc, signature = verified_description(request)
        product = save_description(desc, signature, request.user)
        return Response(product_json(product), status=201)


class ProductDetailView(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsWalletUser()] if self.request.method in ("PUT", "DELETE") else []

    @extend_schema(responses={200: ProductOut})
    def get(self, request: Request, market_hash: str) -> Response:
        product = get_object_or_404(Product.objects.select_related("seller", "superseded_by"), market_hash=market_hash)
        is_owner = request.user is not None and product.seller_id == request.user.pk
        # Superseded versions stay readable: orders placed on them must remain verifiable.
        if product.status in (Visibility.HIDDEN, Visibility.DELETED) and not is_owner:
            raise ApiError("no such product", code="not_found", status_code=404)
        return Response(product_json(product))

    @extend_schema(request=PublishRequest, responses={201: ProductOut})
    def put(self, request: Request, market_hash: str) -> Response:
        """Replace a listing with a new signed version; the old one is kept as superseded."""
        old = own_product(request, market_hash)
        if old.status not in (Visibility.VISIBLE, Visibility.HIDDEN):
            raise ApiError(
                f"a {Visibility(old.status).label} product cannot be updated", code="conflict", status_code=409
            )
        desc, signature = verified_description(request)
        with transaction.atomic():
            new = save_description(desc, signature, request.user, cover=old.cover)
            Product.objects.filter(pk=new.pk).update(status=old.status)
            new.status = old.status
            Product.objects.filter(pk=old.pk).update(status=Visibility.SUPERSEDED, superseded_by=new)
            old.status = Visibility.SUPERSEDED
        reindex_on_commit(old)
        return Response(product_json(new), status=201)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, market_hash: str) -> Response:
        product = own_product(request, market_hash)
        if product.status == Visibility.DELETED:
            raise ApiError("product already deleted", code="not_found", status_code=404)
        product.status = Visibility.DELETED
        product.save(update_fields=["status"])
        reindex_on_commit(product)
        return Response(status=204)


class VisibilityView(APIView):
    permission_classes = [IsWalletUser]
    target: Visibility = Visibility.HIDDEN

    @extend_schema(request=None, responses={200: ProductOut})
    def post(self, request: Request, market_hash: str) -> Response:
        product = own_product(request, market_hash)
        if product.status not in (Visibility.VISIBLE, Visibility.HIDDEN):
            raise ApiError(
                f"a {Visibility(product.status).label} product cannot be shown or hidden",
                code="conflict",
                status_code=409,
            )
        product.status = self.target
        product.save(update_fields=["status"])
        reindex_on_commit(product)
        return Response(product_json(product))


class CoverView(APIView):
    """Cover images: validated as real images, stored under MEDIA_ROOT/covers with a name the
    server chooses, and served only through this endpoint (no client-supplied paths)."""

    parser_classes = [MultiPartParser]

    def get_permissions(self) -> list[Any]:
        return [IsWalletUser()] if self.request.method == "PUT" else []

    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY})
    def get(self, request: Request, market_hash: str) -> FileResponse:
        product = get_object_or_404(Product, market_hash=market_hash)
        if not product.cover or product.status in (Visibility.HIDDEN, Visibility.DELETED):
            raise ApiError("this product has no cover image", code="not_found", status_code=404)
        path = settings.MEDIA_ROOT / "covers" / product.cover
        ext = product.cover.rsplit(".", 1)[-1].upper()
        content_type = COVER_FORMATS.get("JPEG" if ext == "JPG" else ext, "application/octet-stream")
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ApiError("cover image file is missing", code="not_found", status_code=404) from None
        response = FileResponse(handle, content_type=content_type)
        response["Cache-Control"] = "public, max-age=86400"
        response["Content-Security-Policy"] = "default-src 'none'"
        return response

    @extend_schema(
        request={
            "multipart/form-data": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
        },
        responses={200: ProductOut},
    )
    def put(self, request: Request, market_hash: str) -> Response:
        product = own_product(request, market_hash)
        upload = request.FILES.get("image")
        if upload is None:
            raise ApiError("send the image as multipart field 'image'", code="invalid")
        if upload.size is None or upload.size > settings.PDASH["MAX_COVER_BYTES"]:
            raise ApiError(
                f"cover image larger than {settings.PDASH['MAX_COVER_BYTES']} bytes", code="too_large", status_code=413
            )
        data = upload.read()
        try:
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or ""
                width, height = image.size
                image.verify()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise ApiError("cover is not a PNG, JPEG, GIF or WebP image", code="invalid") from None
        if fmt not in COVER_FORMATS or width * height > MAX_COVER_PIXELS:
            raise ApiError("cover must be a PNG, JPEG, GIF or WebP image of at most 4096x4096", code="invalid")
        covers = settings.MEDIA_ROOT / "covers"
        covers.mkdir(parents=True, exist_ok=True)
        name = f"{product.market_hash}-{secrets.token_hex(4)}.{fmt.lower()}"
        tmp = covers / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(covers / name)
        old = product.cover
        product.cover = name
        product.save(update_fields=["cover"])
        if old and old != name and not Product.objects.filter(cover=old).exists():
            (covers / old).unlink(missing_ok=True)
        return Response(product_json(product))


def _decimal(request: Request, name: str) -> Decimal | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ApiError(f"{name} must be a number of wei") from None
    if not value.is_finite() or value < 0 or value >= Decimal(2) ** 128:
        raise ApiError(f"{name} must be a non-negative number of wei below 2**128")
    return value


def _list_param(request: Request, name: str) -> tuple[str, ...]:
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    if len(values) > 20:
        raise ApiError(f"at most 20 values of {name}")
    return tuple(values)


SEARCH_PARAMETERS = [
    OpenApiParameter("keyword", str, description="words matched in title, description and tags"),
    OpenApiParameter("category", str),
    OpenApiParameter("tag", str, description="comma-separated; any of them"),
    OpenApiParameter("seller", str, description="comma-separated addresses; any of them"),
    OpenApiParameter("ptype", str, enum=["file", "stream"]),
    OpenApiParameter("min_price", str, description="wei"),
    OpenApiParameter("max_price", str, description="wei"),
    OpenApiParameter("sort", str, enum=list(SORTS)),
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int),
]


def search_query(request: Request, page: int, size: int) -> SearchQuery:
    params = request.query_params
    keyword = params.get("keyword", "").strip()
    if len(keyword) > 200:
        raise ApiError("keyword longer than 200 characters")
    sort = params.get("sort", "relevance")
    if sort not in SORTS:
        raise ApiError(f"sort must be one of {', '.join(SORTS)}")
    ptype = params.get("ptype", "")
    if ptype not in ("", "file", "stream"):
        raise ApiError("ptype must be file or stream")
    sellers = tuple(address_or_error(s, "seller must be 0x-prefixed addresses") for s in _list_param(request, "seller"))
    min_price, max_price = _decimal(request, "min_price"), _decimal(request, "max_price")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise ApiError("min_price is above max_price")
    category = params.get("category", "")
    if len(category) > 100:
        raise ApiError("category longer than 100 characters")
    return SearchQuery(
        keyword=keyword,
        category=category,
        tags=_list_param(request, "tag"),
        sellers=sellers,
        ptype=ptype,
        min_price=min_price,
        max_price=max_price,
        sort=sort,
        offset=(page - 1) * size,
        limit=size,
    )


# The product columns a search page shows (product_json reads them), read by products_by_ids.
PAGE_FIELDS = (
    "id", "market_hash", "desc_hash", "seller_address", "title", "description", "ptype", "price", "category",
    "tags_text", "data_hash", "storage_type", "size", "start_date", "end_date", "canonical", "signature", "status",
    "superseded_by_id", "cover", "created", "sales", "rating_count", "rating_avg",
)  # fmt: skip


_PAGE_READERS: dict[str, tuple[str, list[tuple[int, Any, list[Any]]]]] = {}


def _page_reader(connection: Any) -> tuple[str, list[tuple[int, Any, list[Any]]]]:
    """The page statement's head and the column converters of `connection`'s database, built
    once per database alias: looking up 24 fields' converters took longer than the query."""
    if connection.alias not in _PAGE_READERS:
        fields = [Product._meta.get_field(name) for name in PAGE_FIELDS]
        table = Product._meta.db_table
        columns = ", ".join(f"p.{connection.ops.quote_name(f.column)}" for f in fields)
        converters = []
        for i, field in enumerate(fields):
            col = field.get_col(table)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                converters.append((i, col, found))
        head = (
            f"SELECT {columns}, u.username, s.market_hash FROM {table} p "
            f"JOIN {WalletUser._meta.db_table} u ON u.id = p.seller_id "
            f"LEFT JOIN {table} s ON s.id = p.superseded_by_id WHERE p.id IN "
        )
        _PAGE_READERS[connection.alias] = (head, converters)
    return _PAGE_READERS[connection.alias]


def products_by_ids(ids: list[int]) -> list[dict[str, Any]]:
    """A search page's products in `ids` order, with their sellers' names, in one query whose
    rows become product_json's input directly: model instances (and select_related over three
    wide models before them) cost more than the search itself."""
    if not ids:
        return []
    connection = connections[router.db_for_read(Product)]
    head, converters = _page_reader(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"{head}({', '.join(['%s'] * len(ids))})", ids)
        rows = cursor.fetchall()
    by_id = {}
    for row in rows:
        values = list(row)
        for i, col, found in converters:
            for convert in found:
                values[i] = convert(values[i], col, connection)
        product = SimpleNamespace(**dict(zip(PAGE_FIELDS, values, strict=False)))
        product.superseded_by = SimpleNamespace(market_hash=values[-1]) if values[-1] is not None else None
        by_id[product.id] = product_json(product, seller_name=values[-2])  # type: ignore[arg-type]
    return [by_id[i] for i in ids if i in by_id]


def run_search(request: Request, query: SearchQuery, page: int, size: int) -> Response:
    try:
        result = get_backend().search(query)
    except SearchError as exc:
        raise ApiError(str(exc), code="search_unavailable", status_code=503) from None
    return page_response(request, result.total, products_by_ids(result.ids), page, size)


class SearchView(APIView):
    @extend_schema(parameters=SEARCH_PARAMETERS, responses={200: ProductPage})
    def get(self, request: Request) -> Response:
        page, size = page_params(request)
        return run_search(request, search_query(request, page, size), page, size)


def queryset_page(request: Request, qs: QuerySet[Product]) -> Response:
    page, size = page_params(request)
    total = qs.count()
    rows = list(qs.select_related("seller", "superseded_by")[(page - 1) * size : page * size])
    return page_response(request, total, [product_json(p) for p in rows], page, size)


class MyProductsView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["visible", "hidden"]), OpenApiParameter("page", int)],
        responses={200: ProductPage},
    )
    def get(self, request: Request) -> Response:
        wanted = request.query_params.get("status", "")
        statuses = {
            "": [Visibility.VISIBLE, Visibility.HIDDEN],
            "visible": [Visibility.VISIBLE],
            "hidden": [Visibility.HIDDEN],
        }
        if wanted not in statuses:
            raise ApiError("status must be visible or hidden")
        qs = Product.objects.filter(seller=request.user, status__in=statuses[wanted]).order_by("-created", "-id")
        return queryset_page(request, qs)


def visible() -> QuerySet[Product]:
    return Product.objects.filter(status=Visibility.VISIBLE)


class RecommendView(APIView):
    """Best sellers first, then best rated, then newest."""

    @extend_schema(parameters=[OpenApiParameter("page", int)], responses={200: ProductPage})
    def get(self, request: Request) -> Response:
        return queryset_page(request, visible().order_by("-sales", "-rating_avg", "-created", "-id"))


class YouMayLikeView(APIView):
    """Products with a followed tag or by a followed seller, excluding the caller's own;
    the general recommendations when the caller follows nothing."""

    permission_classes = [IsWalletUser]

    @extend_schema(parameters=[OpenApiParameter("page", int)], responses={200: ProductPage})
    def get(self, request: Request) -> Response:
        tags = list(FollowedTag.objects.filter(user=request.user).values_list("tag", flat=True))
        sellers = list(FollowedSeller.objects.filter(user=request.user).values_list("seller_address", flat=True))
        qs = visible().exclude(seller=request.user)
        if tags or sellers:
            qs = qs.filter(Q(tag_rows__tag__in=tags) | Q(seller_address__in=sellers)).distinct()
        return queryset_page(request, qs.order_by("-sales", "-rating_avg", "-created", "-id"))


def _followed_page(request: Request, follows: QuerySet[Any], key: str, field: str) -> Response:
    """One page of the caller's follows (tags or sellers), newest first, as {key: value, created}."""
    page, size = page_params(request)
    qs = follows.filter(user=request.user).order_by("-created", "-id")
    rows = [{key: getattr(row, field), "created": row.created} for row in qs[(page - 1) * size : page * size]]
    return page_response(request, qs.count(), rows, page, size)


class FollowedTagsView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(parameters=[OpenApiParameter("page", int)])
    def get(self, request: Request) -> Response:
        return _followed_page(request, FollowedTag.objects.all(), "tag", "tag")

    @extend_schema(request=TagRequest)
    def post(self, request: Request) -> Response:
        body = TagRequest(data=request.data)
        body.is_valid(raise_exception=True)
        tag = body.validated_data["tag"].strip()
        if not tag or "," in tag:
            raise ApiError("tag must be non-empty and without commas")
        row, created = FollowedTag.objects.get_or_create(user=request.user, tag=tag)
        return Response({"tag": row.tag, "created": row.created}, status=201 if created else 200)


class FollowedTagDetailView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, tag: str) -> Response:
        deleted, _ = FollowedTag.objects.filter(user=request.user, tag=tag).delete()
        if not deleted:
            raise ApiError("you do not follow this tag", code="not_found", status_code=404)
        return Response(status=204)


class FollowedTagProductsView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(parameters=[OpenApiParameter("page", int)], responses={200: ProductPage})
    def get(self, request: Request) -> Response:
        tags = FollowedTag.objects.filter(user=request.user).values_list("tag", flat=True)
        qs = visible().filter(tag_rows__tag__in=list(tags)).distinct().order_by("-created", "-id")
        return queryset_page(request, qs)


class FollowedSellersView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(parameters=[OpenApiParameter("page", int)])
    def get(self, request: Request) -> Response:
        return _followed_page(request, FollowedSeller.objects.all(), "seller", "seller_address")

    @extend_schema(request=SellerRequest)
    def post(self, request: Request) -> Response:
        body = SellerRequest(data=request.data)
        body.is_valid(raise_exception=True)
        seller = address_or_error(body.validated_data["seller"], "seller must be a 0x-prefixed address")
        if seller == request.user.address:
            raise ApiError("you cannot follow yourself")
        row, created = FollowedSeller.objects.get_or_create(user=request.user, seller_address=seller)
        return Response({"seller": row.seller_address, "created": row.created}, status=201 if created else 200)


class FollowedSellerDetailView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, seller: str) -> Response:
        address = address_or_error(seller, "seller must be a 0x-prefixed address", not_found=True)
        deleted, _ = FollowedSeller.objects.filter(user=request.user, seller_address=address).delete()
        if not deleted:
            raise ApiError("you do not follow this seller", code="not_found", status_code=404)
        return Response(status=204)


class FollowedSellerProductsView(APIView):
    permission_classes = [IsWalletUser]

    @extend_schema(parameters=[OpenApiParameter("page", int)], responses={200: ProductPage})
    def get(self, request: Request) -> Response:
        sellers = FollowedSeller.objects.filter(user=request.user).values_list("seller_address", flat=True)
        return queryset_page(request, visible().filter(seller_address__in=list(sellers)).order_by("-created", "-id"))
