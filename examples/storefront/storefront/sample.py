"""The storefront's own sample catalog: six products with images drawn by Pillow.

Images are simple shapes and colours with the product's name, drawn with Pillow's built-in
default font: no third-party logos, pictures or font files. Rendering is deterministic, so seeding
twice uploads nothing the second time.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from decimal import Decimal

from PIL import Image, ImageDraw, ImageFont

from .catalog import SIDECAR_KEY, ProductInfo, render_sidecar

IMAGE_SIZE = (480, 360)
CURRENCY = "EUR"


@dataclass(frozen=True)
class SampleProduct:
    """One product of the sample catalog and how to draw it."""

    key: str
    name: str
    price: Decimal
    description: str
    shape: str
    colour: str


@dataclass(frozen=True)
class SeedObject:
    """One object to put in the bucket."""

    key: str
    data: bytes
    content_type: str


SAMPLE_PRODUCTS: tuple[SampleProduct, ...] = (
    SampleProduct(
        "red-circle-mug.png",
        "Red circle mug",
        Decimal("12.50"),
        "A mug with one bold red circle.",
        "circle",
        "#c72c48",
    ),
    SampleProduct(
        "blue-square-poster.png",
        "Blue square poster",
        Decimal("24.00"),
        "A calm blue square, printed large.",
        "square",
        "#2b6cb0",
    ),
    SampleProduct(
        "green-triangle-tote.png",
        "Green triangle tote bag",
        Decimal("18.90"),
        "Carries everything, points upwards.",
        "triangle",
        "#2f855a",
    ),
    SampleProduct(
        "yellow-star-sticker.png",
        "Yellow star sticker",
        Decimal("3.50"),
        "A five-pointed star for your laptop.",
        "star",
        "#d69e2e",
    ),
    SampleProduct(
        "purple-stripes-scarf.png",
        "Purple stripes scarf",
        Decimal("29.00"),
        "Warm stripes for cold datacenters.",
        "stripes",
        "#6b46c1",
    ),
    SampleProduct(
        "orange-diamond-cap.png",
        "Orange diamond cap",
        Decimal("21.00"),
        "A cap with a diamond on the front.",
        "diamond",
        "#dd6b20",
    ),
)


def render_image(product: SampleProduct) -> bytes:
    """The product's PNG: its shape in its colour on a light background, and its name."""
    width, height = IMAGE_SIZE
    image = Image.new("RGB", IMAGE_SIZE, "#f3f4f6")
    draw = ImageDraw.Draw(image)
    centre_x, centre_y, radius = width / 2, height / 2 - 30, 95
    colour = product.colour
    if product.shape == "circle":
        box = (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius)
        draw.ellipse(box, fill=colour)
    elif product.shape == "square":
        draw.rectangle(
            (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius),
            fill=colour,
        )
    elif product.shape == "triangle":
        draw.polygon(
            [
                (centre_x, centre_y - radius),
                (centre_x + radius, centre_y + radius),
                (centre_x - radius, centre_y + radius),
            ],
            fill=colour,
        )
    elif product.shape == "star":
        points = []
        for index in range(10):
            angle = math.pi / 2 + index * math.pi / 5
            reach = radius if index % 2 == 0 else radius * 0.42
            points.append((centre_x + reach * math.cos(angle), centre_y - reach * math.sin(angle)))
        draw.polygon(points, fill=colour)
    elif product.shape == "stripes":
        for index in range(5):
            top = centre_y - radius + index * 2 * radius / 5
            draw.rectangle(
                (centre_x - 1.4 * radius, top, centre_x + 1.4 * radius, top + radius / 5),
                fill=colour,
            )
    elif product.shape == "diamond":
        draw.polygon(
            [
                (centre_x, centre_y - radius),
                (centre_x + radius, centre_y),
                (centre_x, centre_y + radius),
                (centre_x - radius, centre_y),
            ],
            fill=colour,
        )
    else:
        raise ValueError(f"unknown shape {product.shape!r}")
    font = ImageFont.load_default(size=28)
    draw.text((width / 2, height - 40), product.name, fill="#1d2430", font=font, anchor="mm")
    output = io.BytesIO()
    image.save(output, format="PNG", optimize=False)
    return output.getvalue()


def sample_objects() -> list[SeedObject]:
    """Every object of the sample catalog: the images, then the sidecar describing them."""
    objects = [SeedObject(p.key, render_image(p), "image/png") for p in SAMPLE_PRODUCTS]
    sidecar = render_sidecar(
        CURRENCY,
        {
            p.key: ProductInfo(name=p.name, price=p.price, description=p.description)
            for p in SAMPLE_PRODUCTS
        },
    )
    objects.append(SeedObject(SIDECAR_KEY, sidecar, "application/json"))
    return objects
