"""Figures for the command line (matplotlib, Agg backend): the estimated voltage profile with
its uncertainty band against the truth, the cost-accuracy curve, and a risk map of the feeder.
Each function writes one PNG and returns its path."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandapower as pp

from flexgrid.monitoring.network import FloatArray, NetworkModel


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path: Path, title: str, *, grid: bool) -> Path:  # type: ignore[no-untyped-def]
    """Title, legend (and grid) on `ax`, then write `fig` to `path` as PNG and close it."""
    ax.set_title(title)
    ax.legend()
    if grid:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bus_xy(net: pp.pandapowerNet, model: NetworkModel) -> FloatArray:
    """Plot coordinates per model bus: the net's geodata where present, else a tree layout
    (depth from the substation, leaves spread vertically)."""
    xy = np.full((model.n_bus, 2), np.nan)
    if "geo" in net.bus.columns:
        for i, b in enumerate(model.bus_ids):
            geo = net.bus.at[int(b), "geo"]
            if isinstance(geo, str) and geo:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    xy[i] = json.loads(geo)["coordinates"][:2]
    if not np.isnan(xy).any():
        return xy
    parents = model.parents()
    children: dict[int, list[int]] = {}
    for b, k in enumerate(parents):
        if k is None:
            continue
        p = int(model.f[k]) if int(model.t[k]) == b else int(model.t[k])
        children.setdefault(p, []).append(b)
    counter = [0.0]

    def place(b: int, depth: int) -> float:
        kids = children.get(b, [])
        if not kids:
            y = counter[0]
            counter[0] += 1
        else:
            y = float(np.mean([place(c, depth + 1) for c in kids]))
        xy[b] = (depth, -y)
        return y

    import sys

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for root in model.slacks:
        place(int(root), 0)
    return xy


def voltage_profile(
    path: Path, bus_ids: Sequence[int], vm_est: FloatArray, vm_std: FloatArray, vm_true: FloatArray | None,
    title: str, metered: Sequence[int] = (),
) -> Path:
    plt = _pyplot()
    x = np.arange(len(bus_ids))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.fill_between(x, vm_est - 2 * vm_std, vm_est + 2 * vm_std, alpha=0.3, label="estimate ± 2σ")
    ax.plot(x, vm_est, "o-", ms=3, label="estimate")
    if vm_true is not None:
        ax.plot(x, vm_true, "k.", ms=5, label="truth")
    pos = [i for i, b in enumerate(bus_ids) if b in set(metered)]
    if pos:
        ax.plot(pos, vm_est[pos], "r^", ms=8, label="metered bus")
    ax.set_xticks(x[:: max(1, len(x) // 20)])
    ax.set_xticklabels([str(bus_ids[i]) for i in x[:: max(1, len(x) // 20)]])
    ax.set_xlabel("bus")
    ax.set_ylabel("voltage (pu)")
    return _finish(plt, fig, ax, path, title, grid=True)


def cost_accuracy(path: Path, costs: Sequence[float], bounds_pu: Sequence[float], tolerance_pu: float, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.step(costs, np.asarray(bounds_pu) * 100, where="post", marker="o")
    ax.axhline(tolerance_pu * 100, color="r", ls="--", label="target")
    ax.set_xlabel("meter cost (EUR)")
    ax.set_ylabel("worst-bus 95 % error bound (% of nominal)")
    return _finish(plt, fig, ax, path, title, grid=True)


def risk_map(
    path: Path, net: pp.pandapowerNet, model: NetworkModel, bus_value: FloatArray, branch_value: FloatArray,
    title: str, label: str,
) -> Path:
    """Buses and branches coloured by a risk figure (e.g. violation probability, EENS)."""
    plt = _pyplot()
    import matplotlib as mpl
    from matplotlib import colors

    xy = bus_xy(net, model)
    vmax = float(max(np.nanmax(bus_value) if bus_value.size else 0, np.nanmax(branch_value) if branch_value.size else 0, 1e-12))
    norm = colors.Normalize(vmin=0, vmax=vmax)
    cmap = mpl.colormaps["inferno_r"]
    fig, ax = plt.subplots(figsize=(9, 7))
    for k in range(model.n_branch):
        a, b = int(model.f[k]), int(model.t[k])
        style = "-" if model.base_status[k] else ":"
        color = cmap(norm(branch_value[k])) if model.base_status[k] else "0.6"
        ax.plot(xy[[a, b], 0], xy[[a, b], 1], style, color=color, lw=2.5 if model.base_status[k] else 1)
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=bus_value, cmap=cmap, norm=norm, s=60, edgecolors="k", zorder=3)
    ax.scatter(xy[model.slacks, 0], xy[model.slacks, 1], marker="s", s=150, c="tab:blue", zorder=4, label="substation")
    for i, b in enumerate(model.bus_ids):
        ax.annotate(str(b), xy[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_axis_off()
    return _finish(plt, fig, ax, path, title, grid=False)


def histogram(path: Path, values: FloatArray, markers: dict[str, float], title: str, xlabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pos = values[values > 0]
    ax.hist(pos if pos.size else values, bins=40, color="tab:orange")
    for name, v in markers.items():
        ax.axvline(v, ls="--", label=f"{name} {v:.1f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("scenarios (shortfall > 0)")
    return _finish(plt, fig, ax, path, title, grid=False)
