from typing import Any

from django.apps import AppConfig


class ProductConfig(AppConfig):
    name = "cpchain.market.product"
    label = "product"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_ensure_fulltext, sender=self)


def _ensure_fulltext(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """After every migrate: SQLite drops a table's triggers when a migration rebuilds it, which
    would silently stop full-text indexing; this restores the structures (and reindexes)."""
    from django.db import connections

    from cpchain.market.search.db import ensure_fulltext

    ensure_fulltext(connections[using])
