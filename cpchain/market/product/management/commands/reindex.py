"""`market-manage reindex`: rebuild the active search backend's index from the product table.

For the database backend this re-reads every visible row (and, on MySQL, rebuilds the
FULLTEXT index, which a change of innodb_ft_min_token_size needs); for Elasticsearch it
bulk-loads a fresh index and switches the alias to it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cpchain.market.product.models import Product, Visibility
from cpchain.market.search import SearchError, get_backend


class Command(BaseCommand):
    help = "Rebuild the search index (database full-text or Elasticsearch) from the products."

    def handle(self, *args: Any, **options: Any) -> None:
        backend = get_backend()
        products = Product.objects.filter(status=Visibility.VISIBLE).order_by("id").iterator(chunk_size=2000)
        try:
            count = backend.reindex(products)
        except SearchError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"reindex: {count} visible products indexed by the {backend.name} search backend")
