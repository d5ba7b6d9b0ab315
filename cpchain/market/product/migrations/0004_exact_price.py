"""Product.price becomes a WeiField: exact on SQLite as well.

A DecimalField on SQLite kept prices beyond 2**63 wei (9.22 ether) as doubles, so two listings
one wei apart compared equal in sorts and ranges. WeiField stores a zero-padded decimal string
there (and the same DECIMAL(40, 0) on MySQL/MariaDB, where nothing changes). SQLite: the
full-text structures (whose triggers and view read the column) are dropped first, the table is
rebuilt with the new column, every price is rewritten from the signed listing (its exact
source), then the structures are built again.
"""

import json
from typing import Any

from django.db import migrations

import cpchain.market.records.fields


def drop_search(apps: Any, schema_editor: Any) -> None:
    from cpchain.market.search.db import drop_fulltext

    if schema_editor.connection.vendor == "sqlite":
        drop_fulltext(schema_editor.connection)


def rebuild_search(apps: Any, schema_editor: Any) -> None:
    from cpchain.market.search.db import rebuild_fulltext

    if schema_editor.connection.vendor == "sqlite":
        rebuild_fulltext(schema_editor.connection)


def exact_prices(apps: Any, schema_editor: Any) -> None:
    """SQLite: every price again, exactly, in the new column's form."""
    from cpchain.market.search.db import rebuild_fulltext

    connection = schema_editor.connection
    if connection.vendor != "sqlite":
        return
    product = apps.get_model("product", "Product")
    field = product._meta.get_field("price")
    table = product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, canonical FROM {table}")
        rows = cursor.fetchall()
        cursor.executemany(
            f"UPDATE {table} SET price = %s WHERE id = %s",
            [(field.get_db_prep_save(int(json.loads(canonical)["price"]), connection), pk) for pk, canonical in rows],
        )
    rebuild_fulltext(connection)


class Migration(migrations.Migration):
    dependencies = [
        ("product", "0003_search_index"),
    ]

    operations = [
        # Either way the table is rebuilt without the full-text structures, which read the column.
        migrations.RunPython(drop_search, rebuild_search, elidable=False),
        migrations.AlterField(
            model_name="product",
            name="price",
            field=cpchain.market.records.fields.WeiField(),
        ),
        # Backwards the old column's NUMERIC affinity turns the strings back into numbers.
        migrations.RunPython(exact_prices, drop_search, elidable=False),
    ]
