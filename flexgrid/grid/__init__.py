"""Grid models: loading pandapower nets, the operated network's branch view, profiles, hashing."""

from flexgrid.grid.networks import BUILTIN_NETS, load_net, reduce_to_balanced
from flexgrid.grid.profiles import (
    Profiles,
    daily_shapes,
    profiles_from_csv,
    shape_for_slots,
    synthetic_profiles,
)
from flexgrid.grid.topology import GridView, build_view, grid_model_hash

__all__ = [
    "BUILTIN_NETS",
    "GridView",
    "Profiles",
    "build_view",
    "daily_shapes",
    "grid_model_hash",
    "load_net",
    "profiles_from_csv",
    "reduce_to_balanced",
    "shape_for_slots",
    "synthetic_profiles",
]
