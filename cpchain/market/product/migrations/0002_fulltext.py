"""Full-text search structures for the database search backend (cpchain.market.search.db).

SQLite: an external-content FTS5 table over the visible products, kept in step by triggers.
MySQL/MariaDB: an InnoDB FULLTEXT index on (title, description, tags_text), without stopwords.
The DDL lives in the backend so `market-manage reindex` can rebuild exactly the same thing.
"""

from typing import Any

from django.db import migrations


def forwards(apps: Any, schema_editor: Any) -> None:
    from cpchain.market.search.db import create_fulltext

    create_fulltext(schema_editor.connection)


def backwards(apps: Any, schema_editor: Any) -> None:
    from cpchain.market.search.db import drop_fulltext

    drop_fulltext(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("product", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
