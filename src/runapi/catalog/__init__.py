"""The model catalog."""

from runapi.catalog.catalog import (
    Catalog,
    DeploymentSpec,
    FaqItem,
    ModelEntry,
    ModelText,
    ProviderSpec,
    build_catalog,
    builtin_catalog_data,
)

__all__ = [
    "Catalog",
    "DeploymentSpec",
    "FaqItem",
    "ModelEntry",
    "ModelText",
    "ProviderSpec",
    "build_catalog",
    "builtin_catalog_data",
]
