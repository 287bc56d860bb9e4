"""The two training losses, as plain functions of tensors so they can be checked against hand-computed values."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_loss(
    logits: torch.Tensor, item_codes: torch.Tensor, weights: torch.Tensor, log_q: torch.Tensor | None
) -> torch.Tensor:
    """In-batch softmax: row i's positive is column i; the other columns are its negatives.

    logits [b, b] already hold cosine / temperature plus the repeat bonus. log_q [b] (log popularity of each column's
    item) is subtracted so popular items are not over-penalised for appearing as negatives more often. Columns holding
    the same item as the row's positive are masked (they are not negatives). Weighted mean over rows.
    """
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    same = item_codes.unsqueeze(0) == item_codes.unsqueeze(1)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    per_row = F.cross_entropy(logits.float(), target, reduction="none")
    return (per_row * weights).sum() / weights.sum()


def ctr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of clicked vs shown-not-clicked."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels)
