"""Search structures, second version (cpchain.market.search.db).

SQLite: the FTS5 facets column gains price buckets (price ranges are matched in the index) and
drops the token of the common type, so the FTS5 table and its triggers are rebuilt.
MySQL/MariaDB: the InnoDB FULLTEXT index is unchanged; it is only created if missing.
The rating sort's index gains rating_count, its tie-break.
"""

from typing import Any

from django.db import migrations, models


def forwards(apps: Any, schema_editor: Any) -> None:
    from cpchain.market.search.db import ensure_fulltext, rebuild_fulltext

    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        rebuild_fulltext(connection)
    else:
        ensure_fulltext(connection)


class Migration(migrations.Migration):
    dependencies = [
        ("account", "0001_initial"),
        ("product", "0002_fulltext"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="product",
            name="product_pro_status_14f0ff_idx",
        ),
        migrations.AddIndex(
            model_name="product",
            index=models.Index(fields=["status", "rating_avg", "rating_count"], name="product_pro_status_f8c944_idx"),
        ),
        # Backwards keeps the current structures: they are what this code reads.
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
    ]
