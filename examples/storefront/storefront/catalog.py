"""Products: the objects of the bucket, described by the catalog sidecar (pure, no I/O).

Every object of the bucket except the sidecar itself is a product. Its name is derived from its
key unless the sidecar ``catalog.json`` (stored in the same bucket) describes it::

    {"currency": "EUR",
     "products": {"red-circle-mug.png": {"name": "Red circle mug", "price": "12.50",
                                         "description": "..."}}}

A missing, unreadable or partially wrong sidecar never breaks the shop: unusable entries are
ignored and the affected products fall back to their key-derived name with no price.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

#: Key of the sidecar that describes the products (never listed as a product itself).
SIDECAR_KEY = "catalog.json"
DEFAULT_CURRENCY = "EUR"


@dataclass(frozen=True)
class StoredObject:
    """What a listing says about one object."""

    key: str
    size: int
    last_modified: datetime | None = None


@dataclass(frozen=True)
class ProductInfo:
    """What the sidecar says about one product (every field optional)."""

    name: str | None = None
    price: Decimal | None = None
    description: str | None = None


@dataclass(frozen=True)
class Sidecar:
    """The parsed sidecar."""

    currency: str = DEFAULT_CURRENCY
    products: Mapping[str, ProductInfo] = field(default_factory=dict)

    def info(self, key: str) -> ProductInfo:
        """The description of ``key`` (empty when the sidecar does not mention it)."""
        return self.products.get(key, ProductInfo())


@dataclass(frozen=True)
class Product:
    """One product card."""

    key: str
    name: str
    size: int
    price: Decimal | None
    currency: str
    description: str | None
    last_modified: datetime | None

    @property
    def price_label(self) -> str | None:
        """``12.50 EUR``, or ``None`` when the product has no price."""
        if self.price is None:
            return None
        return f"{self.price:.2f} {self.currency}"

    @property
    def size_label(self) -> str:
        """The object's size for humans (``12.3 KiB``)."""
        return human_size(self.size)


def display_name(key: str) -> str:
    """A product name from an object key: last path segment, extension dropped, ``-``/``_`` as
    spaces, first letter capitalised (``posters/blue-square_2.png`` → ``Blue square 2``)."""
    base = posixpath.basename(key.rstrip("/")) or key
    stem, extension = posixpath.splitext(base)
    if stem and re.fullmatch(r"\.[A-Za-z0-9]{1,5}", extension):
        base = stem
    words = re.sub(r"[-_\s]+", " ", base).strip()
    if not words:
        return key
    return words[0].upper() + words[1:]


def human_size(size: int) -> str:
    """``size`` bytes in B, KiB, MiB or GiB with one decimal above bytes."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def parse_sidecar(raw: bytes) -> Sidecar:
    """Parse the sidecar, tolerating any malformation (bad JSON gives an empty sidecar, a bad
    entry is skipped, a bad field is dropped)."""
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Sidecar()
    if not isinstance(document, dict):
        return Sidecar()
    currency = document.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        currency = DEFAULT_CURRENCY
    entries = document.get("products")
    products: dict[str, ProductInfo] = {}
    if isinstance(entries, dict):
        for key, entry in entries.items():
            if isinstance(key, str) and isinstance(entry, dict):
                products[key] = _product_info(entry)
    return Sidecar(currency=currency, products=products)


def render_sidecar(currency: str, products: Mapping[str, ProductInfo]) -> bytes:
    """The sidecar document for ``products`` (stable output: sorted keys, prices as strings)."""
    entries: dict[str, dict[str, str]] = {}
    for key, info in products.items():
        entry: dict[str, str] = {}
        if info.name is not None:
            entry["name"] = info.name
        if info.price is not None:
            entry["price"] = f"{info.price:.2f}"
        if info.description is not None:
            entry["description"] = info.description
        entries[key] = entry
    document = {"currency": currency, "products": entries}
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def build_products(objects: Iterable[StoredObject], sidecar: Sidecar) -> list[Product]:
    """The product cards for a listing, in key order, the sidecar itself and "directory" markers
    excluded."""
    products = []
    for stored in sorted(objects, key=lambda item: item.key):
        if stored.key == SIDECAR_KEY or stored.key.endswith("/"):
            continue
        info = sidecar.info(stored.key)
        products.append(
            Product(
                key=stored.key,
                name=info.name or display_name(stored.key),
                size=stored.size,
                price=info.price,
                currency=sidecar.currency,
                description=info.description,
                last_modified=stored.last_modified,
            )
        )
    return products


def _product_info(entry: Mapping[str, Any]) -> ProductInfo:
    name = entry.get("name")
    description = entry.get("description")
    return ProductInfo(
        name=name if isinstance(name, str) and name.strip() else None,
        price=_price(entry.get("price")),
        description=description if isinstance(description, str) and description else None,
    )


def _price(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return price
