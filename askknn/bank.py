"""The feature bank: block outputs of the bank images, stored once, searched exactly.

Cosine search is Euclidean search on L2-normalised features (same ranking). Two exact searches:
torch on the device (the default: on the GPU when CUDA is present, where the bank's vectors stay
and queries never pass through numpy; on the CPU otherwise) and faiss (`IndexFlatL2`, kept as a
cross-check). Measured on 2 CPU cores on 2026-11-26 (the default preset's AT model, 300 images,
conv3; README, "Time on 2 CPU cores"), the torch search made ASK-Atk, DkNN-Atk and SW20 1.7-2.5x
faster than faiss, whose flat index takes its slow non-BLAS path for the few queries of one class.
Both are built lazily per (layer, metric) and, for class-restricted searches, per class.
"""
from __future__ import annotations

import functools
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import faiss

from askknn.data import to_float
from askknn.io import load_npz, load_output, save_npz
from askknn.shared import METRICS, ParamError, choice

SEARCHES = ("faiss", "torch")


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ParamError(f"metric {metric!r} is unknown; choose one of: {', '.join(METRICS)}")


def in_metric(x: np.ndarray, metric: str) -> np.ndarray:
    """Features in the geometry where Euclidean search ranks by `metric`."""
    check_metric(metric)
    return normalise(x) if metric == "cosine" else x


@torch.no_grad()
def extract_features(model, images: torch.Tensor, layers, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Flattened block outputs of uint8 `images` at `layers`, as float32 arrays."""
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        for layer, f in model.features(x, layers).items():
            chunks[layer].append(f.float().cpu().numpy())
    return {layer: np.concatenate(parts) for layer, parts in chunks.items()}


@functools.cache
def gpu_resources():
    """One faiss GPU context per process, or None without faiss-gpu or a GPU."""
    import faiss   # imported where used: the torch search on a GPU machine needs no faiss
    if torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources"):
        return faiss.StandardGpuResources()
    return None


def flat_index(vectors: np.ndarray) -> faiss.Index:
    """An exact L2 index over `vectors`, on the GPU when faiss-gpu and a GPU are there."""
    import faiss
    index = faiss.IndexFlatL2(vectors.shape[1])
    if gpu_resources() is not None:
        index = faiss.index_cpu_to_gpu(gpu_resources(), torch.cuda.current_device(), index)
    index.add(vectors)
    return index


def torch_search(vectors: torch.Tensor, sq_norms: torch.Tensor, queries: torch.Tensor,
                 k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact squared Euclidean kNN on the vectors' device: ||q||^2 - 2 q.v + ||v||^2, the k smallest,
    nearest first (the expansion faiss's flat index uses too)."""
    dist = (queries.pow(2).sum(1, keepdim=True) - 2 * queries @ vectors.T + sq_norms).clamp_min_(0)
    return dist.topk(k, dim=1, largest=False)


class FeatureBank:
    """Features (per layer) and labels of the bank; exact kNN search over them. `search`: torch (the
    default, on `device`: the GPU when CUDA is present, else the CPU) or faiss."""

    def __init__(self, features: dict[str, np.ndarray], labels: np.ndarray, search: str | None = None,
                 device: str | torch.device | None = None):
        self.backend = search or "torch"
        choice("bank search", self.backend, SEARCHES)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.features = {k: as_numpy(v) for k, v in features.items()}
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1
        self.class_members = [np.flatnonzero(self.labels == c) for c in range(self.num_classes)]
        self._indices: dict[tuple, object] = {}
        self._vectors: dict[tuple, np.ndarray] = {}

    @property
    def layers(self) -> list[str]:
        return list(self.features)

    def smallest_class(self) -> int:
        return min(len(m) for m in self.class_members)

    def check(self, layers, k: int, what: str = "k") -> None:
        for layer in layers:
            if layer not in self.features:
                raise ParamError(f"layer {layer!r} is not in the feature bank (it holds {', '.join(self.layers)}); "
                                 f"add it to dknn.layers and re-run the bank stage")
        if k > self.smallest_class():
            raise ParamError(f"{what} = {k} is larger than a class's share of the bank ({self.smallest_class()})")

    def vectors(self, layer: str, metric: str) -> np.ndarray:
        """Bank features of `layer` in `metric`'s geometry (normalised for cosine), cached."""
        key = (layer, metric)
        if key not in self._vectors:
            self._vectors[key] = np.ascontiguousarray(in_metric(self.features[layer], metric))
        return self._vectors[key]

    def _index(self, layer: str, metric: str, cls: int | None = None):
        """A faiss index, or (vectors, squared norms) on the device for the torch search."""
        key = (layer, metric, cls)
        if key not in self._indices:
            vectors = self.vectors(layer, metric)
            vectors = vectors if cls is None else vectors[self.class_members[cls]]
            if self.backend == "faiss":
                self._indices[key] = flat_index(vectors)
            else:
                v = torch.from_numpy(vectors).to(self.device)
                self._indices[key] = (v, v.pow(2).sum(1))
        return self._indices[key]

    def _queries(self, queries, metric: str):
        """Queries in `metric`'s geometry: float32 numpy for faiss, a tensor on the device for torch."""
        if self.backend == "faiss":
            return in_metric(as_numpy(queries), metric)
        check_metric(metric)
        q = torch.as_tensor(queries).detach().to(self.device, torch.float32)
        return q / q.norm(dim=1, keepdim=True).clamp_min(1e-12) if metric == "cosine" else q

    def _search(self, layer: str, metric: str, q, k: int, cls: int | None = None):
        index = self._index(layer, metric, cls)
        if self.backend == "faiss":
            return index.search(q, k)
        dist, idx = torch_search(*index, q, k)
        return dist.cpu().numpy(), idx.cpu().numpy()

    def search(self, layer: str, metric: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and bank indices of the k nearest bank points, nearest first."""
        return self._search(layer, metric, self._queries(queries, metric), k)

    def _class_blocks(self, layer: str, metric: str):
        """The torch search's class-sorted bank: vectors (C * m, D) in C blocks of m rows (m = the
        largest class; a smaller class padded with rows at infinite distance), their squared norms,
        and the bank index of every row (C, m)."""
        key = (layer, metric, "by_class")
        if key not in self._indices:
            m = max(len(members) for members in self.class_members)
            rows = np.stack([np.resize(members, m) for members in self.class_members])   # pads by repeating
            padded = np.arange(m)[None, :] >= np.array([len(x) for x in self.class_members])[:, None]
            v = torch.from_numpy(self.vectors(layer, metric)[rows.ravel()]).to(self.device)
            norms = v.pow(2).sum(1).masked_fill_(torch.from_numpy(padded.ravel()).to(self.device), float("inf"))
            self._indices[key] = (v, norms, torch.from_numpy(rows).to(self.device))
        return self._indices[key]

    def per_class(self, layer: str, metric: str, queries, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For every class, the k nearest bank points of that class: squared distances and bank
        indices, tensors (B, C, k) on the bank's device for the torch search (nothing leaves it),
        on the CPU for faiss."""
        q = self._queries(queries, metric)
        if self.backend == "torch":   # one product and one top-k over the class blocks
            v, norms, rows = self._class_blocks(layer, metric)
            dist = (q.pow(2).sum(1, keepdim=True) - 2 * q @ v.T + norms).clamp_min_(0)
            dist, pos = dist.view(len(q), self.num_classes, -1).topk(k, dim=2, largest=False)
            return dist, rows[torch.arange(self.num_classes, device=rows.device)[None, :, None], pos]
        dist = np.empty((len(q), self.num_classes, k), dtype=np.float32)
        idx = np.empty((len(q), self.num_classes, k), dtype=np.int64)
        for c in range(self.num_classes):
            d, i = self._search(layer, metric, q, k, c)
            dist[:, c], idx[:, c] = d, self.class_members[c][i]
        return torch.from_numpy(dist), torch.from_numpy(idx)

    def search_per_class(self, layer: str, metric: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """per_class as numpy arrays (B, C, k)."""
        dist, idx = self.per_class(layer, metric, queries, k)
        return dist.cpu().numpy(), idx.cpu().numpy()

    def vector_tensor(self, layer: str, metric: str) -> torch.Tensor:
        """vectors() as a tensor where the search keeps them: the torch search's own copy on the
        device (references are gathered there, with no host copy), a view of the host array for faiss."""
        if self.backend == "torch":
            return self._index(layer, metric)[0]
        return torch.from_numpy(self.vectors(layer, metric))

    def gather(self, layer: str, metric: str, idx) -> torch.Tensor:
        """The vectors at bank indices `idx` (an array or tensor of any shape), gathered where the
        search keeps them (see vector_tensor)."""
        vectors = self.vector_tensor(layer, metric)
        return vectors[torch.as_tensor(idx).to(vectors.device)]

    @functools.cached_property
    def label_tensor(self) -> torch.Tensor:
        """The labels beside vector_tensor()'s rows (on the device for the torch search)."""
        return torch.from_numpy(self.labels).to(self.device if self.backend == "torch" else "cpu")

    # ------------------------------------------------------------ storage
    def save(self, path: str | Path, **extra: np.ndarray) -> None:
        save_npz(path, labels=self.labels, **{f"feat_{k}": v for k, v in self.features.items()}, **extra)

    @classmethod
    def load(cls, path: str | Path) -> tuple["FeatureBank", dict[str, np.ndarray]]:
        """The bank and any extra arrays stored beside it (e.g. held-out features)."""
        method, _, seed = Path(path).stem.rpartition("_seed")   # banks/<method>_seed<seed>.npz: bank@<method>-<seed>
        arrays = load_output(path, load_npz, f"dvc repro bank@{method}-{seed}")
        feats = {k[5:]: arrays.pop(k) for k in list(arrays) if k.startswith("feat_")}
        return cls(feats, arrays.pop("labels")), arrays
