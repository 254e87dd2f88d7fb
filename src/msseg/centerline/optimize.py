"""Global centerline optimisation along the S–I axis, solved exactly by dynamic programming.

Design notes: docs/explanation/design-notes.md#mssegcenterlineoptimize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PathCost:
    smoothness: float = 1.0      # λ, per mm² of excess displacement per mm of height
    free_slope: float = 1.0      # σ, in-plane mm per S–I mm that cost nothing
    score_weight: float = 1.0    # w
    max_gap_mm: float = 40.0     # chosen slices at most this far apart


def path_cost(choice: Sequence[int], positions: Sequence[np.ndarray],
              scores: Sequence[np.ndarray], z: Sequence[float], cost: PathCost) -> float:
    """E of a path; ``choice[k]`` is a candidate index or −1 (slice skipped); inf if a gap
    between consecutive chosen slices exceeds ``max_gap_mm``."""
    total, last = 0.0, None
    for k, c in enumerate(choice):
        if c < 0:
            continue
        total -= cost.score_weight * float(scores[k][c])
        if last is not None:
            j, cj = last
            gap = z[k] - z[j]
            if gap > cost.max_gap_mm + 1e-9:
                return float("inf")
            total += _pair(positions[k][c][None], positions[j][cj][None], gap, cost)[0, 0]
        last = (k, c)
    return total


def _pair(p: np.ndarray, q: np.ndarray, gap: float, cost: PathCost) -> np.ndarray:
    """(len(p), len(q)) smoothness costs between candidates ``gap`` mm apart along S–I."""
    distance = np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1))
    excess = np.maximum(distance - cost.free_slope * gap, 0.0)
    return cost.smoothness * excess**2 / gap


def optimal_path(positions: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                 z: Sequence[float], cost: PathCost = PathCost()) -> list[int]:
    """The choice (candidate index or −1 per slice) of minimal E; ``z`` strictly increasing."""
    z = np.asarray(z, dtype=float)
    if np.any(np.diff(z) <= 0):
        raise ValueError("slice heights must be strictly increasing")
    n = len(positions)
    best: list[np.ndarray] = []
    back: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(n):
        p = np.asarray(positions[k], float).reshape(-1, 2)
        unary = -cost.score_weight * np.asarray(scores[k], float).reshape(-1)
        value = unary.copy()                       # start a path here (predecessor: none)
        from_slice = np.full(len(p), -1)
        from_cand = np.full(len(p), -1)
        j = k - 1
        while j >= 0 and z[k] - z[j] <= cost.max_gap_mm + 1e-9:
            if len(best[j]):
                q = np.asarray(positions[j], float).reshape(-1, 2)
                pair = _pair(p, q, z[k] - z[j], cost)
                total = best[j][None] + pair              # (here, previous)
                arg = total.argmin(1)
                cand = unary + total[np.arange(len(p)), arg]
                better = cand < value
                value = np.where(better, cand, value)
                from_slice = np.where(better, j, from_slice)
                from_cand = np.where(better, arg, from_cand)
            j -= 1
        best.append(value)
        back.append((from_slice, from_cand))
    choice = [-1] * n
    ends = [(float(b.min()), k, int(b.argmin())) for k, b in enumerate(best) if len(b)]
    if not ends:
        return choice
    value, k, c = min(ends)
    if value >= 0:  # the empty path is at least as good
        return choice
    while k >= 0:
        choice[k] = c
        k, c = int(back[k][0][c]), int(back[k][1][c])
    return choice
