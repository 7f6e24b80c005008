"""``predict.yaml``: which predictive models run and how, one section per model.

Every field has a default, so a workspace without the file runs every model with the defaults.
Purchases are what ``segments.yaml`` says they are (``purchase_events``, ``revenue_property``,
``order_id_property``); this file only says where an order's products are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config_files import load_yaml_model
from .affinity import AffinityConfig
from .base import MODELS, PredictConfigError
from .churn import ChurnConfig
from .data import ProductFields
from .features import FeaturesConfig
from .lifetime import LifetimeConfig
from .lookalike import LookalikeConfig
from .rfm import RFMConfig

KEY = r"^[A-Za-z_$][A-Za-z0-9_$-]{0,99}$"


class ProductsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    list_property: str = Field("products", pattern=KEY, description="Property of an order event "
                               "holding its products (a list of objects), as in Segment's spec.")
    product_id: str = Field("product_id", pattern=KEY, description="Product id key (on a line "
                            "event, or in each product object).")
    category: str = Field("category", pattern=KEY, description="Product category key.")
    price: list[str] = Field(["price", "unit_price"], min_length=1, description="Unit price "
                             "keys, first present wins.")
    quantity: str = Field("quantity", pattern=KEY, description="Quantity key (1 when absent).")

    def fields(self) -> ProductFields:
        return ProductFields(self.list_property, self.product_id, self.category,
                             tuple(self.price), self.quantity)


class PredictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[Literal["clv", "rfm", "churn", "affinity", "lookalike"]] = Field(
        default_factory=lambda: list(MODELS), description="Models `predict run` runs, in order.")
    products: ProductsConfig = Field(default_factory=ProductsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    clv: LifetimeConfig = Field(default_factory=LifetimeConfig)
    rfm: RFMConfig = Field(default_factory=RFMConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    affinity: AffinityConfig = Field(default_factory=AffinityConfig)
    lookalike: LookalikeConfig = Field(default_factory=LookalikeConfig)


def load_predict_config(path: Path | None) -> PredictConfig:
    return load_yaml_model(path, PredictConfig, PredictConfigError)
