"""Descriptor matching: mutual nearest neighbours by L2 distance, with Lowe's ratio test.

In: two descriptor sets, a [N x D] and b [M x D] (numpy or torch). Rows are expected
L2-normalised, as `Features` gives them: then one matrix product gives every distance.
Other rows work too, through full squared distances (slower).
Out: matches [K x 2] int64, (index into a, index into b), sorted by the index into a.

The work is float32 matrix products in torch, in row blocks so that large b (a whole map's
points) never needs an N x M matrix at once.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

logger = logging.getLogger(__name__)
_scratch = threading.local()

BLOCK_ELEMENTS = 1 << 22  # distances computed per block: 16 MB of float32, the most a thread keeps


def _as_tensor(x, device: torch.device, name: str) -> torch.Tensor:
    tensor = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if tensor.ndim != 2:
        raise ValueError(f"{name}: expected a [N x D] array, got shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32)


def _is_unit(x: torch.Tensor, tolerance: float = 1e-2) -> bool:
    """Squared norms within 1% of 1 (float16-stored descriptors pass): d^2 = 2 - 2 a.b is then
    off by at most about that much, far below what separates matches from non-matches."""
    return bool(torch.all(((x * x).sum(1) - 1.0).abs() < tolerance))


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N x D], [M x D] -> [N x M] squared L2 distances (clamped at 0 against rounding)."""
    norms = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None]
    return torch.addmm(norms, a, b.T, alpha=-2.0).clamp_(min=0.0)


def _scores(x: torch.Tensor, y: torch.Tensor, unit: bool) -> torch.Tensor:
    """[n x m] scores that grow as distance shrinks: x.y for unit rows, else -d^2. In a
    buffer this thread reuses (valid until its next call): a fresh one of several MB costs
    page faults on every call, as much as the product itself (2026-12-07)."""
    if not unit or x.device.type != "cpu":
        return x @ y.T if unit else -squared_distances(x, y)
    size = len(x) * len(y)
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.numel() < size:
        buffer = _scratch.buffer = torch.empty(size)
    return torch.matmul(x, y.T, out=buffer[:size].view(len(x), len(y)))


def _top2_in_place(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two largest scores of each row of [n x m] without a sort (topk is several times
    slower on the CPU); overwrites each row's best. Ties: the first column. -> values
    [n x min(2, m)], the best's column [n]."""
    if scores.device.type == "cpu":
        # numpy's argmax: 0.5 ms for 1024 x 5000 where torch's max with indices takes 4 (2026-12-07).
        index = torch.from_numpy(scores.numpy().argmax(axis=1))
        best = scores.gather(1, index[:, None])[:, 0]
    else:
        best, index = scores.max(dim=1)
    if scores.shape[1] < 2:
        return best[:, None], index
    scores.scatter_(1, index[:, None], -torch.inf)
    return torch.stack([best, scores.amax(dim=1)], 1), index


def _second_best_of_b(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor,
                      unit: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """For mutual pairs (a[rows[k]], b[columns[k]]): b's row's best score over a (at rows[k])
    and its second best. Only the matched b rows are scored: at most n x n products, not a
    second m x n one."""
    best = torch.empty(len(rows), device=a.device)
    second = torch.empty(len(rows), device=a.device)
    block = max(1, BLOCK_ELEMENTS // len(a))
    for start in range(0, len(rows), block):
        span = slice(start, start + block)
        scores = _scores(b[columns[span]], a, unit)
        at = rows[span][:, None]
        best[span] = scores.gather(1, at)[:, 0]
        second[span] = scores.scatter_(1, at, -torch.inf).amax(dim=1)
    return best, second


def match_mutual_nn(descriptors_a, descriptors_b, ratio: float | None = 0.9, max_distance: float | None = None,
                    device: str | torch.device = "cpu", ratio_b: bool = True, ratio_a: bool = True) -> np.ndarray:
    """Mutual nearest neighbours between a [N x D] and b [M x D] -> matches [K x 2] int64.

    A pair (i, j) is kept when j is i's nearest neighbour in b and i is j's nearest in a, and:
    - ratio: Lowe's test, nearest distance < ratio * second-nearest, in both directions
      (so duplicates on either side are dropped, and swapping a and b swaps the result).
      A side with a single candidate has no second neighbour and skips the test. None: no test.
      `ratio_b=False`: a's side only (b's rows may have near-duplicates in a that are no
      ambiguity, e.g. one map point and a query's keypoints on the same corner). `ratio_a=False`:
      b's side only (the caller tests a's side itself, e.g. against other points than the
      nearest row's own).
    - max_distance: the L2 distance is at most this (for unit rows it lies in [0, 2]).
    """
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1] or be None, got {ratio}")
    device = torch.device(device)
    a = _as_tensor(descriptors_a, device, "descriptors_a")
    b = _as_tensor(descriptors_b, device, "descriptors_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor sizes differ: a has {a.shape[1]}, b has {b.shape[1]}")
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64)

    with torch.inference_mode():
        # For unit rows (what extractors give) the score is the dot product, d^2 = 2 - 2 score.
        unit = _is_unit(a) and _is_unit(b)
        block = max(1, BLOCK_ELEMENTS // m)
        a_top = torch.empty((n, min(2, m)), device=device)  # best scores of each a row over b
        a_index = torch.empty(n, dtype=torch.long, device=device)
        b_best = None  # b's best score over a, [M]
        for start in range(0, n, block):
            span = slice(start, start + block)
            scores = _scores(a[span], b, unit)
            # b's best down the columns (amax: several times faster than max with indices on
            # the CPU; mutual is then a's best equal to it), before a's second best
            # overwrites a's best in place.
            column = scores.amax(dim=0)
            b_best = column if b_best is None else torch.maximum(b_best, column)
            a_top[span], a_index[span] = _top2_in_place(scores)

        def squared(score: torch.Tensor) -> torch.Tensor:
            return (2.0 - 2.0 * score).clamp(min=0.0) if unit else -score

        rows = torch.arange(n, device=device)
        # Mutual: a's best is b's best; of rows tied for it, the first (as max would pick).
        tied = torch.nonzero(a_top[:, 0] >= b_best[a_index])[:, 0].cpu().numpy()
        _, first = np.unique(a_index[tied].cpu().numpy(), return_index=True)
        keep = torch.zeros(n, dtype=torch.bool)
        keep[tied[first]] = True
        keep = keep.to(device)
        a_best = squared(a_top[:, 0])
        if ratio is not None:
            r2 = float(ratio) ** 2  # compare squared distances
            if m > 1 and ratio_a:
                keep &= a_best < r2 * squared(a_top[:, 1])
            if n > 1 and ratio_b:
                # b's side for the pairs still kept only: b's second best needs b's rows.
                kept = torch.nonzero(keep)[:, 0]
                best, second = _second_best_of_b(a, b, kept, a_index[kept], unit)
                keep[kept] = squared(best) < r2 * squared(second)
        if max_distance is not None:
            keep &= a_best <= float(max_distance) ** 2
        matches = torch.stack([rows[keep], a_index[keep]], dim=1)
    return matches.cpu().numpy().astype(np.int64)
