"""Settlement after delivery: meter data, baselines, delivered flexibility, and a preview of the
round's payments with its conservation check (docs/settlement.md).

```python
from flexgrid.settlement import (simulate_metering, meter_readings, MeterBeforeActivation,
                                 SameSlotAverage, escrow_micro, preview_settlement, check_conservation)
meters = simulate_metering(rc, trades, offers, seed=7, delivery_factor={lazy_provider: 0.5})
readings = meter_readings(rc, trades, offers, meters, SameSlotAverage(days=5))
preview = preview_settlement(rc, trades, readings, dso=dso, escrow=escrow_micro(rc, requests))
check_conservation(preview)
```
"""

from flexgrid.settlement.metering import (
    BASELINES,
    Baseline,
    MeterBeforeActivation,
    MeterSeries,
    SameSlotAverage,
    delivered_kw,
    meter_readings,
    order_directions,
    simulate_metering,
)
from flexgrid.settlement.preview import (
    SettlementError,
    SettlementPreview,
    check_conservation,
    escrow_micro,
    preview_settlement,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "MeterBeforeActivation",
    "MeterSeries",
    "SameSlotAverage",
    "SettlementError",
    "SettlementPreview",
    "check_conservation",
    "delivered_kw",
    "escrow_micro",
    "meter_readings",
    "order_directions",
    "preview_settlement",
    "simulate_metering",
]
