"""Package layout that pyproject.toml alone cannot express: every package under ``src/``, plus the
example storefront (``examples/storefront/storefront``, its source of truth) shipped inside the
wheel as ``mcresolve.demo.storefront`` so that an installed ``mcresolve[demo]`` can run the demo.
Everything else (metadata, extras, package data) is in pyproject.toml."""

from setuptools import find_packages, setup

STOREFRONT = "mcresolve.demo.storefront"

setup(
    packages=[*find_packages("src"), STOREFRONT],
    package_dir={"": "src", STOREFRONT: "examples/storefront/storefront"},
)
