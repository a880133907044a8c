"""The asset meta-service: asset descriptions -> priced, feasible FlexOffers (docs/assets.md).

```python
from flexgrid.assets import BatteryAsset, propose_offers, simulate_asset, Activation
offers = propose_offers(battery, round_config, provider=addr, bus=17, nonce_start=round_id << 64,
                        expiry_s=round_config.gate_closure_s, direction=Direction.UP, slots=range(68, 80))
```
"""

from flexgrid.assets.devices import asset_devices
from flexgrid.assets.feasibility import Activation, AssetRun, simulate_asset, simulate_assets
from flexgrid.assets.models import (
    ASSET_TYPES,
    Asset,
    AssetBase,
    BatteryAsset,
    CurtailablePVAsset,
    EVAsset,
    HeatPumpAsset,
    ShiftableLoadAsset,
    parse_asset,
)
from flexgrid.assets.offers import (
    DIVISIBLE_PREMIUM,
    OfferOption,
    exclusive_group_id,
    offer_options,
    propose_offers,
)
from flexgrid.assets.samples import KINDS, sample_assets

__all__ = [
    "ASSET_TYPES",
    "DIVISIBLE_PREMIUM",
    "KINDS",
    "Activation",
    "Asset",
    "AssetBase",
    "AssetRun",
    "BatteryAsset",
    "CurtailablePVAsset",
    "EVAsset",
    "HeatPumpAsset",
    "OfferOption",
    "ShiftableLoadAsset",
    "asset_devices",
    "exclusive_group_id",
    "offer_options",
    "parse_asset",
    "propose_offers",
    "sample_assets",
    "simulate_asset",
    "simulate_assets",
]
