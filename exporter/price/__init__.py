"""Price: provider and customer cost of each record from the genai-prices catalog and `pricing:` overrides."""

from .catalog import PROVIDER_IDS, catalog_age_seconds, catalog_version
from .config import PriceOverride, PricingConfig, PricingConfigError
from .pricer import UNPRICED, PriceInfo, Pricer, lookup

__all__ = [
    "PROVIDER_IDS",
    "UNPRICED",
    "PriceInfo",
    "PriceOverride",
    "Pricer",
    "PricingConfig",
    "PricingConfigError",
    "catalog_age_seconds",
    "catalog_version",
    "lookup",
]
