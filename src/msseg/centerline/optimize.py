"""Global centerline optimisation along the S–I axis, solved exactly by dynamic programming.

Each axial slice ``k`` (at height ``z_k`` mm) offers candidate in-plane positions ``p_kc`` (mm)
with detection scores ``s_kc`` in [0, 1]. A path chooses at most one candidate per slice (a
slice may be skipped: CNN1 found nothing there, or only something implausible) and costs

    E = Σ_chosen (−w · s_kc)  +  λ · Σ_consecutive chosen (j, k) [‖p_k − p_j‖ − σ·Δz]₊² / Δz

with Δz = z_k − z_j, chosen slices at most ``max_gap_mm`` apart (the empty path costs 0) and
[x]₊ = max(x, 0). The cord may drift in-plane by up to σ mm per mm along S–I for free (``free_
slope``, default 1, i.e. 45°: an oblique cord in a sagittal acquisition costs nothing, however
far apart the sampled slices are); beyond that the penalty is quadratic, divided by the gap as
for a Brownian path (splitting an excess D over a gap G into n steps costs n·(D/n)²/(G/n) =
D²/G, so skipped slices neither reward nor punish a straight bridge). An isolated false
detection far from the cord is skipped when its jump costs more than its score — the
continuity regularisation of OptiC (Gros et al. 2018) that lets the centerline survive slices
where CNN1 fails.

Minimising E over all paths is a shortest path in a DAG: ``best[k, c] = −w s_kc + min(0,
min_{j, c'} best[j, c'] + λ‖p_kc − p_jc'‖²/(z_k − z_j))`` in O(Z · gap · K²).
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
