"""WeiField: amounts of wei stored exactly on SQLite as well as on MySQL/MariaDB.

A plain DecimalField is not exact on SQLite: its NUMERIC affinity stores any integer beyond
64 bits (9.22 ether) as a double, and Django reads it back through a float. That is the
2018 market's "float wei" defect by another route. WeiField is DECIMAL(max_digits, 0) on
other databases and, on SQLite, a zero-padded decimal string of max_digits characters, so
equality, range lookups and ordering stay numeric. Values are non-negative integers,
returned as Decimal. Arithmetic in SQL (F() + n, Sum) is not supported on SQLite; compute
in Python or store totals.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper


class WeiField(models.Field):  # type: ignore[type-arg]
    description = "A non-negative integer amount of wei, exact on every database"

    def __init__(self, *args: Any, max_digits: int = 40, **kwargs: Any) -> None:
        self.max_digits = max_digits
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.max_digits != 40:
            kwargs["max_digits"] = self.max_digits
        return name, path, args, kwargs

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        if connection.vendor == "sqlite":
            return f"varchar({self.max_digits})"
        return f"numeric({self.max_digits}, 0)"

    def to_python(self, value: Any) -> Decimal | None:
        if value is None:
            return None
        try:
            amount = Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            raise ValidationError(f"{value!r} is not an amount of wei") from None
        if amount != amount.to_integral_value() or amount < 0 or len(str(int(amount))) > self.max_digits:
            raise ValidationError(f"{value!r} is not a non-negative integer of at most {self.max_digits} digits")
        return Decimal(int(amount))

    def get_prep_value(self, value: Any) -> Decimal | None:
        return self.to_python(super().get_prep_value(value))

    def get_db_prep_value(self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None or connection.vendor != "sqlite":
            return value
        return f"{int(value):0{self.max_digits}d}"

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Decimal | None:
        return None if value is None else Decimal(int(Decimal(value)))

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    def formfield(self, **kwargs: Any) -> Any:
        defaults: dict[str, Any] = {
            "form_class": forms.DecimalField,
            "max_digits": self.max_digits,
            "decimal_places": 0,
            "min_value": 0,
        }
        return super().formfield(**{**defaults, **kwargs})
