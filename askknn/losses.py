"""The ASK loss (paper eq. 2) in its attack and defense forms, and the soft nearest neighbour loss.

All reductions go through log-sum-exp, so the losses stay finite for tiny temperatures and
far-apart features. Losses are returned per example; callers reduce. They always compute in at least
float32, also inside bf16 autocast (`in_fp32`): at tau = 0.01 a bf16 cosine error of about 4e-3
becomes 0.4 in the logits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from askknn.shared import METRICS, ParamError


def in_fp32(fn):
    """Run `fn` with autocast off and half-precision tensor arguments upcast to float32. Float32 and
    float64 inputs outside autocast pass through untouched (the CPU path computes what it always did)."""
    def up(v):
        return v.float() if isinstance(v, torch.Tensor) and v.dtype in (torch.bfloat16, torch.float16) else v

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next(a.device.type for a in args if isinstance(a, torch.Tensor))
        with torch.autocast(device, enabled=False):
            return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
    return wrapper


@in_fp32
def similarity(features: torch.Tensor, refs: torch.Tensor, metric: str, tau: float,
               refs_normalised: bool = False, ref_sq_norms: torch.Tensor | None = None) -> torch.Tensor:
    """A(x', r) for features (B, D) against per-example references (B, R, D) or references
    shared by the whole batch (R, D): shape (B, R).

    cosine: cos(f, r) / tau;  l2: -||f - r||_2 / tau (plain, not squared, distance).
    For constant references (bank features) the per-step work is cut: `refs_normalised` says
    cosine references are already unit vectors; `ref_sq_norms` gives the l2 references' ||r||^2.
    """
    dot = "bd,rd->br" if refs.dim() == 2 else "bd,brd->br"
    if metric == "cosine":
        r = refs if refs_normalised else F.normalize(refs, dim=-1)
        return torch.einsum(dot, F.normalize(features, dim=-1), r) / tau
    if metric == "l2":
        r_sq = refs.pow(2).sum(-1) if ref_sq_norms is None else ref_sq_norms
        sq = (features.pow(2).sum(-1, keepdim=True) + r_sq
              - 2 * torch.einsum(dot, features, refs))
        return -sq.clamp_min(1e-12).sqrt() / tau
    raise ParamError(f"metric {metric!r} is unknown; choose one of: {', '.join(METRICS)}")


def _class_mask(ref_labels: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
    """For the targeted variant, keep only references of the true and the target class."""
    if target is None:
        return None
    return (ref_labels == y[:, None]) | (ref_labels == target[:, None])


@dataclass(frozen=True)
class ClassPooling:
    """How similarities (B, R) to labelled references become class logits (B, C), fixed for a batch
    of references and so built once per batch instead of once per attack step (class_pooling):
    the references' one-hot labels (B, R, C) and each class's count, or None in the class-mean form
    (reference c is class c's single vector: the logits are the similarities themselves); and the
    classes whose logit is -inf (B, C), or None when there are none."""
    one_hot: torch.Tensor | None
    counts: torch.Tensor | None
    absent: torch.Tensor | None

    def __getitem__(self, rows) -> "ClassPooling":
        """The pooling of some images of the batch."""
        return ClassPooling(*(None if t is None else t[rows] for t in (self.one_hot, self.counts, self.absent)))


def class_pooling(ref_labels: torch.Tensor | None, y: torch.Tensor, num_classes: int,
                  target: torch.Tensor | None = None) -> ClassPooling:
    """The ClassPooling of references labelled ref_labels (B, R), or of one reference per class in
    class order (ref_labels None); in the targeted variant every class but y and the target is absent."""
    wrong = None
    if target is not None:
        wrong = ~(F.one_hot(y, num_classes).bool() | F.one_hot(target, num_classes).bool())
    if ref_labels is None:
        return ClassPooling(None, None, wrong)
    one_hot = F.one_hot(ref_labels, num_classes).float()      # (B, R, C)
    counts = one_hot.sum(1)
    absent = counts == 0
    return ClassPooling(one_hot, counts.clamp_min(1), absent if wrong is None else absent | wrong)


@in_fp32
def pooled_logits(sim: torch.Tensor, pooling: ClassPooling) -> torch.Tensor:
    """Attack-form soft-kNN class log-likelihoods (B, C), up to a per-example constant: z_c = mean
    similarity to class c's references (log S_c, Section 3); -inf for the pooling's absent classes."""
    logits = sim
    if pooling.one_hot is not None:
        logits = torch.einsum("br,brc->bc", sim, pooling.one_hot.to(sim.dtype)) / pooling.counts.to(sim.dtype)
    return logits if pooling.absent is None else logits.masked_fill(pooling.absent, float("-inf"))


@in_fp32
def ask_attack_loss(sim: torch.Tensor, y: torch.Tensor, pooling: ClassPooling) -> torch.Tensor:
    """Per-example attack-form ASK loss -log(S_y / sum_c S_c), S_c = exp(mean_k A) (paper Section 3):
    cross-entropy on the pooled class logits."""
    logits = pooled_logits(sim, pooling)
    return torch.logsumexp(logits, 1) - logits.gather(1, y[:, None]).squeeze(1)


@in_fp32
def ask_loss(sim: torch.Tensor, ref_labels: torch.Tensor, y: torch.Tensor, num_classes: int,
             form: str = "attack", target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example ASK loss -log(S_y / sum_c S_c) from similarities (B, R) to labelled references.

    form="attack": S_c = exp(mean_k A) (paper Section 3), i.e. cross-entropy on class logits
    z_c = mean similarity to class c's references. form="defense": S_c = sum_k exp(A) (Section 4).
    `target` (B,) restricts the out-of-class sum to one class (the targeted attack).
    """
    if form == "attack":
        return ask_attack_loss(sim, y, class_pooling(ref_labels, y, num_classes, target))
    keep = _class_mask(ref_labels, y, target)
    if form == "defense":
        all_refs = sim if keep is None else sim.masked_fill(~keep, float("-inf"))
        same = sim.masked_fill(ref_labels != y[:, None], float("-inf"))
        return torch.logsumexp(all_refs, 1) - torch.logsumexp(same, 1)
    raise ParamError(f"ASK loss form {form!r} is unknown; choose 'attack' or 'defense'")


@in_fp32
def snn_loss(features: torch.Tensor, y: torch.Tensor, temperature: float,
             distance: str = "cosine") -> torch.Tensor:
    """Soft nearest neighbour loss (Frosst, Papernot & Hinton 2019), mean over the batch.

    -log( sum_{j != i, y_j = y_i} exp(-d_ij / T) / sum_{k != i} exp(-d_ik / T) ), with d the
    squared Euclidean ("sqeuclidean") or cosine distance. A sample with no same-class partner
    in the batch has no defined term and is left out of the mean; a batch with none returns 0.
    """
    if distance == "sqeuclidean":
        sq = features.pow(2).sum(1)
        d = (sq[:, None] + sq[None, :] - 2 * features @ features.T).clamp_min(0)
    elif distance == "cosine":
        f = F.normalize(features, dim=1)
        d = 1 - f @ f.T
    else:
        raise ParamError(f"snn distance {distance!r} is unknown; choose 'sqeuclidean' or 'cosine'")
    eye = torch.eye(len(y), dtype=torch.bool, device=features.device)
    same = (y[:, None] == y[None, :]) & ~eye
    has_partner = same.any(1, keepdim=True)
    # Rows without a partner get zeros for logits (a term of 0 with a zero gradient, never log 0) and
    # count for nothing in the mean. No value is read on the host (no boolean index, no branch), so a
    # CUDA graph can capture the training step; with a partner for every image the arithmetic is the
    # plain mean's (the factor is exactly 1).
    logits = (-d / temperature).masked_fill(eye, float("-inf")).where(has_partner, 0)
    positives = logits.masked_fill(~same, float("-inf")).where(has_partner, 0)
    per_example = torch.logsumexp(logits, 1) - torch.logsumexp(positives, 1)
    return per_example.mean() * (len(y) / has_partner.sum().clamp_min(1).to(per_example.dtype))
