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
from runapi.catalog.input_schema import InputSpec, JsonSchema, build_input_schema, check_request
from runapi.catalog.modes import (
    MODE_ENDPOINTS,
    CatalogError,
    Mode,
    TaskType,
    Unit,
    require_mode,
)
from runapi.catalog.price_text import price_line, pricing_json

__all__ = [
    "MODE_ENDPOINTS",
    "Catalog",
    "CatalogError",
    "DeploymentSpec",
    "FaqItem",
    "InputSpec",
    "JsonSchema",
    "Mode",
    "ModelEntry",
    "ModelText",
    "ProviderSpec",
    "TaskType",
    "Unit",
    "build_catalog",
    "build_input_schema",
    "builtin_catalog_data",
    "check_request",
    "price_line",
    "pricing_json",
    "require_mode",
]
