"""Residual vector quantization with EMA codebooks, k-means initialisation and dead-code reset.

* :class:`VectorQuantizer`, one level: project the latent to a small lookup space (DAC's factorized codes,
  Kumar et al. 2023), find the nearest codebook entry, pass gradients straight through, project back. The
  codebook is not trained by gradient but by exponential moving averages of the vectors assigned to each entry
  (van den Oord et al. 2017, "Neural Discrete Representation Learning", appendix A.1; Razavi et al. 2019,
  VQ-VAE-2), initialised by k-means on the first training batch and with unused entries re-seeded from the data
  (as in SoundStream, Zeghidour et al. 2021, and EnCodec, Défossez et al. 2022).
* :class:`ResidualVectorQuantizer`, ``n_q`` levels: level ``i`` quantizes what levels ``< i`` left over, so the
  first level carries the coarse content and each further level refines it (SoundStream, section 3.3). With
  quantizer dropout one model serves every bit rate from 1 to ``n_q`` levels.

Distributed training: when ``torch.distributed`` is initialised, the batch statistics of the EMA update are
summed over processes before they are folded in, and k-means initialisation and dead-code reset are broadcast
from rank 0, so every process keeps the same codebooks. Every level runs on every step (quantizer dropout masks
examples instead of skipping levels), so DDP needs no ``find_unused_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from s2slib.codec.config import CodecConfig
from s2slib.metrics import codebook_usage


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_(*tensors: Tensor) -> None:
    """Sum each tensor over processes, in place (no-op without torch.distributed)."""
    if _distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def _broadcast_(*tensors: Tensor) -> None:
    """Copy each tensor from rank 0 to every process, in place (no-op without torch.distributed)."""
    if _distributed():
        for t in tensors:
            dist.broadcast(t, src=0)


def _tensor_key(t: Tensor) -> tuple:
    """What identifies a tensor's current values for a cache: its storage and its version counter.

    An inference tensor (a model built or loaded under ``torch.inference_mode``, as benchmarks and servers do) has no
    version counter; its storage plus a checksum of its values stand in (a sum over a few thousand numbers costs
    microseconds, against the milliseconds of recomputing what is cached).
    """
    try:
        return t.data_ptr(), t._version
    except RuntimeError:
        return t.data_ptr(), float(t.double().sum()), float(t.double().abs().sum())


def _squared_distances(x: Tensor, codebook: Tensor, metric: str = "euclidean") -> Tensor:
    """Squared distances (N, K), in float64, from each row of ``x`` (N, d) to each row of ``codebook`` (K, d).

    ``metric="euclidean"``: ``||x_n - c_k||^2``. ``metric="cosine"``: the same between the L2-normalised vectors,
    ``2 - 2 cos(x_n, c_k)``, so only directions are compared (DAC's normalised codes).

    Expanded as ``||x||^2 - 2 x.c + ||c||^2`` so it is one matrix product, not an (N, K, d) tensor. The expansion
    cancels catastrophically when ``x`` is close to ``c`` compared with their norms: in float32 the rounding
    (~1e-7 * ||x||^2) can exceed the gap between the two nearest entries and make the choice depend on the batch
    shape. In float64 the error is ~1e-16 * ||x||^2, and with d <= 1024 the cost is still small.
    """
    x, codebook = x.double(), codebook.double()
    if metric == "cosine":
        x, codebook = F.normalize(x, dim=1), F.normalize(codebook, dim=1)
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None, :]


def _lexsort_rows(x: Tensor) -> Tensor:
    """The permutation (N,) that sorts the rows of ``x`` (N, d) in lexicographic order, equal rows in index order.

    One stable sort per column, from the last column to the first. ``torch.unique(x, dim=0)`` sorts the same way,
    but on the CPU it compares rows one pair at a time through the dispatcher (thousands of tiny operations for a
    1024-entry codebook, several milliseconds for every level at every training step); this is ``d`` vectorised
    sorts.
    """
    order = torch.arange(x.shape[0], device=x.device)
    for j in range(x.shape[1] - 1, -1, -1):
        order = order[torch.sort(x[order, j], stable=True).indices]
    return order


def distinct_rows(x: Tensor) -> Tensor:
    """The distinct rows of ``x`` (N, d) in lexicographic order (M, d): what ``torch.unique(x, dim=0)`` returns."""
    if x.shape[0] == 0:
        return x.clone()
    s = x[_lexsort_rows(x)]
    keep = torch.ones(s.shape[0], dtype=torch.bool, device=x.device)
    keep[1:] = (s[1:] != s[:-1]).any(dim=1)
    return s[keep]


def repeated_rows(x: Tensor) -> Tensor:
    """(N,) True for each row of ``x`` (N, d) equal to a row with a lower index."""
    mask = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if x.shape[0] < 2:
        return mask
    # rows with a first value of their own cannot repeat: the common case for a trained codebook costs one sort
    first = torch.sort(x[:, 0]).values
    if not bool((first[1:] == first[:-1]).any()):
        return mask
    order = _lexsort_rows(x)
    s = x[order]
    mask[order[1:][(s[1:] == s[:-1]).all(dim=1)]] = True  # in sorted order a repeat follows its first occurrence
    return mask


def kmeans(x: Tensor, k: int, iters: int, metric: str = "euclidean") -> tuple[Tensor, Tensor]:
    """Lloyd's k-means: ``k`` centroids of the rows of ``x``.

    Parameters
    ----------
    x: Tensor[N, d] data; float32.
    k: number of centroids. Initial centroids are ``k`` random rows of distinct value (values are reused only if
        ``x`` has fewer than ``k`` distinct rows; the extra centroids then get no rows and stay duplicates).
    iters: Lloyd iterations (assign each row to its nearest centroid, move each centroid to its rows' mean); a
        centroid that gets no rows keeps its place.

    Returns
    -------
    centroids: Tensor[k, d]; counts: Tensor[k] rows assigned to each centroid at the end.
    """
    distinct = distinct_rows(x)  # (M, d) equal rows (silent frames) must not seed two centroids
    m = distinct.shape[0]
    idx = torch.randperm(m, device=x.device)[:k] if m >= k else torch.randint(0, m, (k,), device=x.device)
    centroids = distinct[idx].clone()  # (k, d)
    for _ in range(iters):
        assign = _squared_distances(x, centroids, metric).argmin(dim=1)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, d)
        moved = counts > 0
        centroids[moved] = sums[moved] / counts[moved, None]
    counts = torch.bincount(_squared_distances(x, centroids, metric).argmin(dim=1), minlength=k).to(x.dtype)
    return centroids, counts


class OrthonormalBasis(nn.Module):
    """A learnable ``d``-dimensional subspace of a ``D``-dimensional latent, with an orthonormal basis.

    A free parameter ``A`` (D, d) is turned into ``Q`` (D, d) with orthonormal columns by a QR decomposition (signs
    fixed so the diagonal of R is positive, which makes ``Q`` a smooth function of ``A``). Then

    * ``project(z) = Q^T z``: ``Tensor[B, D, T] -> Tensor[B, d, T]`` (coordinates in the subspace), and
    * ``embed(q) = Q q``: ``Tensor[B, d, T] -> Tensor[B, D, T]`` (back into the latent),

    so ``embed(project(z))`` is the orthogonal projection of ``z`` onto the subspace and
    ``||z - embed(q)||^2 = ||z - Q Q^T z||^2 + ||Q^T z - q||^2``: quantizing the coordinates can only remove energy
    from the residual that the codebook captures, never add some elsewhere.
    """

    def __init__(self, dim: int, sub_dim: int):
        super().__init__()
        if sub_dim > dim:
            raise ValueError(f"the codebook dimension ({sub_dim}) cannot exceed the latent dimension ({dim}).")
        self.weight = nn.Parameter(torch.randn(dim, sub_dim) / dim**0.5)

    def basis(self) -> Tensor:
        """``Q: Tensor[D, d]`` with orthonormal columns.

        Outside autograd (inference, streaming) the decomposition is cached until the weight changes, so a streaming
        step does not redo ``n_q`` QR decompositions per frame.
        """
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self._qr()
        key = _tensor_key(self.weight)
        if getattr(self, "_cache_key", None) != key:
            with torch.no_grad():
                self._cache = self._qr()
            self._cache_key = key
        return self._cache

    def _qr(self) -> Tensor:
        q, r = torch.linalg.qr(self.weight.float())  # (D, d), (d, d)
        return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))[None, :]

    def project(self, z: Tensor) -> Tensor:
        return torch.einsum("dk,bdt->bkt", self.basis().to(z.dtype), z)  # (B, d, T)

    def embed(self, q: Tensor) -> Tensor:
        return torch.einsum("dk,bkt->bdt", self.basis().to(q.dtype), q)  # (B, D, T)

    def project_module(self) -> nn.Module:
        return _BasisMap(self, "project")

    def embed_module(self) -> nn.Module:
        return _BasisMap(self, "embed")


class _BasisMap(nn.Module):
    """``in_proj``/``out_proj`` of an orthogonal level: calls :class:`OrthonormalBasis` without registering it again
    (the basis is the level's own submodule ``basis``; holding it here as a plain attribute keeps one copy of its
    weight in the state dict)."""

    def __init__(self, basis: OrthonormalBasis, which: str):
        super().__init__()
        self.__dict__["_basis"] = basis  # not a registered submodule
        self.which = which

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self._basis, self.which)(x)


class VectorQuantizer(nn.Module):
    """One vector-quantization level with an EMA codebook.

    Forward pass, for a latent ``z`` (B, D, T):

    1. ``z_e = in_proj(z)`` (B, d, T), with ``d = codebook_dim`` (a 1x1 conv; identity if ``codebook_dim`` is None).
       A low-dimensional lookup spreads the data over more entries (DAC's factorized codes).
    2. ``codes = argmin_k ||z_e - c_k||^2`` (B, T) and ``q = c_codes`` (B, d, T). With ``metric="cosine"`` the
       distance is taken between L2-normalised vectors (DAC), so entries split the space by direction; ``q`` is
       still the entry's raw vector, the mean of what it was assigned.
    3. Training only, under ``no_grad``: k-means initialisation on the first batch; EMA update of the codebook;
       dead-code reset.
    4. ``commitment = mean((z_e - sg(q))^2)`` per example, pulling the encoder towards its codes.
    5. Straight-through estimator, ``z_e + sg(q - z_e)``: the forward value is ``q``, the gradient flows to ``z_e``
       as if quantization were the identity. Then ``out_proj`` back to ``D`` channels.

    EMA update (van den Oord et al. 2017, appendix A.1), with ``n_k`` the number of vectors assigned to entry ``k``
    in the batch and ``s_k`` their sum::

        N_k <- decay * N_k + (1 - decay) * n_k          # cluster_size
        S_k <- decay * S_k + (1 - decay) * s_k          # embed_sum
        c_k  = S_k / N~_k,  N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j   # Laplace smoothing

    Dead codes: entries with ``N_k < dead_code_threshold * sum_j N_j / K`` (a fraction of the uniform share, so the
    rule does not depend on the batch size) are moved onto random ``z_e`` vectors of the current batch.

    Parameters
    ----------
    dim: channels ``D`` of the latent.
    codebook_size: entries ``K``.
    codebook_dim: lookup dimension ``d``; None looks up directly in ``D`` dimensions.
    decay, epsilon: EMA decay and Laplace smoothing.
    kmeans_iters: Lloyd iterations for the initialisation; 0 keeps the random (Gaussian) initial codebook.
    dead_code_threshold: fraction of the uniform share under which an entry is re-seeded; 0 disables.
    metric: ``"euclidean"`` or ``"cosine"`` nearest-entry search (k-means uses the same).
    projection: how a ``codebook_dim`` lookup maps in and out of the latent. ``"orthogonal"``: ``in_proj`` is
        ``W`` with orthonormal rows and ``out_proj`` its transpose (:class:`OrthonormalBasis`), so the residual a
        level leaves, ``r - W^T q``, is never longer than ``r`` when ``q`` is the nearest entry to ``W r`` and the
        codebook has an entry no farther than the origin. ``"free"``: two independent 1x1 convolutions (DAC); nothing
        then ties ``out_proj(in_proj(r))`` to ``r``, and in a trained model the residual grew with every level
        (relative latent error 1.21 at one level, 2.24 at four).
    """

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int | None = 8, decay: float = 0.99,
                 epsilon: float = 1e-5, kmeans_iters: int = 10, dead_code_threshold: float = 0.1,
                 metric: str = "euclidean", projection: str = "orthogonal"):
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
        self.metric = metric
        self.dim = dim
        self.codebook_size = codebook_size
        self.codebook_dim = dim if codebook_dim is None else codebook_dim
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        if projection not in ("orthogonal", "free"):
            raise ValueError(f"projection must be 'orthogonal' or 'free', got {projection!r}.")
        self.projection = projection
        if codebook_dim is None:
            self.in_proj, self.out_proj = nn.Identity(), nn.Identity()
        elif projection == "orthogonal":
            self.basis = OrthonormalBasis(dim, codebook_dim)
            self.in_proj, self.out_proj = self.basis.project_module(), self.basis.embed_module()
        else:
            self.in_proj = weight_norm(nn.Conv1d(dim, codebook_dim, 1))
            self.out_proj = weight_norm(nn.Conv1d(codebook_dim, dim, 1))
        codebook = torch.randn(codebook_size, self.codebook_dim)
        self.register_buffer("codebook", codebook)  # (K, d)
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # (K,) EMA of assignment counts
        self.register_buffer("embed_sum", codebook.clone())  # (K, d) EMA of assigned-vector sums
        self.register_buffer("initialized", torch.tensor(kmeans_iters == 0))  # k-means done (saved in checkpoints)
        self._duplicates_key: tuple | None = None  # cache of _duplicates()
        self._duplicates_mask = torch.zeros(codebook_size, dtype=torch.bool)

    # ------------------------------------------------------------------ lookups (no state change)
    def _duplicates(self) -> Tensor:
        """(K,) True for each codebook entry equal to an entry with a lower index.

        Identical entries happen (k-means seeded from identical frames, such as digital silence, or dead codes
        re-seeded from them). Their distances to a vector tie exactly in exact arithmetic, but float rounding
        differs between a batch of 200 frames and a batch of 1, so ``argmin`` could pick either: offline and
        streaming encoding would then disagree on the code (though not on the sound). Hiding the duplicates makes
        the lowest index win every tie. The mask is cached until the codebook changes (its version counter moves
        on every in-place update, including ``load_state_dict``).
        """
        key = _tensor_key(self.codebook)
        if key != self._duplicates_key:
            compared = F.normalize(self.codebook, dim=1) if self.metric == "cosine" else self.codebook  # (K, d)
            self._duplicates_mask = repeated_rows(compared)
            self._duplicates_key = key
        return self._duplicates_mask

    def _distances(self, flat: Tensor) -> Tensor:
        """Squared distances (N, K) from each row of ``flat`` (N, d) to each entry, duplicates set to +inf."""
        distances = _squared_distances(flat, self.codebook, self.metric)
        return distances.masked_fill(self._duplicates()[None, :], float("inf"))

    def _nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest entry for each row of ``flat`` (N, d) -> (N,); ties go to the lowest index."""
        return self._distances(flat).argmin(dim=1)

    def encode(self, z: Tensor) -> Tensor:
        """``z: Tensor[B, D, T]`` -> ``codes: Tensor[B, T]`` (int64)."""
        z_e = self.in_proj(z)  # (B, d, T)
        with torch.autocast(device_type=z.device.type, enabled=False):  # full precision even under autocast
            flat = rearrange(z_e, "b d t -> (b t) d").float()  # (B*T, d)
            codes = self._nearest(flat)  # (B*T,)
        return rearrange(codes, "(b t) -> b t", b=z.shape[0])  # (B, T)

    def decode(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, T]`` -> ``z_q: Tensor[B, D, T]``."""
        q = F.embedding(codes, self.codebook)  # (B, T, d)
        return self.out_proj(rearrange(q, "b t d -> b d t"))  # (B, D, T)

    # ------------------------------------------------------------------ training-time codebook updates
    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        centroids, counts = kmeans(flat, self.codebook_size, self.kmeans_iters, self.metric)
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        _broadcast_(self.codebook, self.cluster_size, self.embed_sum)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)  # (K,) n_k
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)  # (K, d) s_k
        _all_reduce_sum_(counts, sums)  # the same statistics on every process
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _reset_dead_codes(self, flat: Tensor, min_distance: Tensor) -> int:
        """Re-seed entries used less than ``dead_code_threshold`` of the uniform share; returns how many were dead.

        ``flat`` (N, d) holds the batch's vectors and ``min_distance`` (N,) their squared distance to the nearest
        entry. New entries are distinct random batch vectors that no entry already sits on (relative distance
        above 1e-3): copying a vector some entry already represents would only create a near-duplicate that
        wastes the slot.
        """
        if self.dead_code_threshold <= 0:
            return 0
        share = self.cluster_size.sum() / self.codebook_size
        dead = self.cluster_size < self.dead_code_threshold * share  # (K,) the same on every process
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        scale = 1.0 if self.metric == "cosine" else flat.double().pow(2).sum(dim=1)  # squared norm of what is compared
        fresh = min_distance > 1e-6 * scale  # (N,) vectors no entry represents yet
        candidates = distinct_rows(flat[fresh])  # (M, d) distinct values (silence gives many equal frames)
        n = min(n_dead, candidates.shape[0])  # the rest stay dead until a later batch
        if n:
            slots = dead.nonzero()[:, 0]
            slots = slots[torch.randperm(n_dead, device=flat.device)[:n]]  # (n,) which dead entries to re-seed
            picks = candidates[torch.randperm(candidates.shape[0], device=flat.device)[:n]]  # (n, d)
            self.codebook[slots] = picks
            # Give each new entry the uniform share of usage, so it is not declared dead again at the next step and
            # the next EMA update (codebook = embed_sum / cluster_size) keeps it where it was put.
            self.cluster_size[slots] = share
            self.embed_sum[slots] = picks * share
        _broadcast_(self.codebook, self.cluster_size, self.embed_sum)  # rank 0's random picks win everywhere
        return n_dead

    # ------------------------------------------------------------------ forward
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize ``z`` and, in training, update the codebook.

        Parameters
        ----------
        z: Tensor[B, D, T] latent (or residual of the previous levels).

        Returns
        -------
        z_q: Tensor[B, D, T], the quantized latent with straight-through gradients to ``z``.
        codes: Tensor[B, T] int64.
        commitment: Tensor[B], mean squared distance between ``z_e`` and its codes, per example.
        """
        B = z.shape[0]
        z_e = self.in_proj(z)  # (B, d, T)
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z_e, "b d t -> (b t) d").detach().float()  # (B*T, d)
            if self.training and not bool(self.initialized):
                self._kmeans_init(flat)
            with torch.no_grad():
                min_distance, codes = self._distances(flat).min(dim=1)  # (B*T,) each
                q = F.embedding(codes, self.codebook)  # (B*T, d), a copy: later in-place updates do not touch it
            if self.training:
                self._ema_update(flat, codes)
                self._reset_dead_codes(flat, min_distance)
        q = rearrange(q, "(b t) d -> b d t", b=B).to(z_e.dtype)  # (B, d, T)
        commitment = (z_e - q).pow(2).mean(dim=(1, 2))  # (B,); q carries no gradient, so this is ||z_e - sg(q)||^2
        # straight-through estimator: the forward value is q, the backward pass hands q's gradient to z_e unchanged
        q_st = z_e + (q - z_e).detach()
        return self.out_proj(q_st), rearrange(codes, "(b t) -> b t", b=B), commitment


@dataclass
class QuantizerOutput:
    """What :meth:`ResidualVectorQuantizer.forward` returns.

    Attributes
    ----------
    z_q: Tensor[B, D, T] quantized latent (sum of the levels each example uses), straight-through to the input.
    codes: Tensor[B, n_q, T] int64, all levels run; example ``b`` used only its first ``n_q_used[b]``.
    vq_loss: scalar, ``commitment_weight * sum_i commitment_loss[i]``: add it to the training loss.
    commitment_loss: Tensor[n_q] unweighted commitment loss per level (batch mean, zero where dropped).
    n_q_used: Tensor[B] levels that contributed to ``z_q`` for each example.
    usage: Tensor[n_q] fraction of each codebook used in this batch.
    perplexity: Tensor[n_q] ``exp(entropy)`` of each level's code histogram (``codebook_size`` when uniform).
    """

    z_q: Tensor
    codes: Tensor
    vq_loss: Tensor
    commitment_loss: Tensor
    n_q_used: Tensor
    usage: Tensor
    perplexity: Tensor


class ResidualVectorQuantizer(nn.Module):
    """``n_q`` :class:`VectorQuantizer` levels, each quantizing the residual the previous ones left.

    ``z_q = sum_i Q_i(r_i)``, ``r_0 = z``, ``r_{i+1} = r_i - Q_i(r_i)`` (SoundStream, Zeghidour et al. 2021,
    algorithm 1). Using the first ``k`` levels gives the ``k * log2(codebook_size)``-bit approximation.

    Quantizer dropout (SoundStream, section 3.3): in training, each example is, with probability
    ``quantizer_dropout``, given a uniform random ``n_q`` in ``1..n_q``; the levels past it are masked out of its
    ``z_q`` and commitment loss, so the decoder learns to work at every bit rate. All levels still run on the whole
    batch (their residuals are real data for the EMA), which keeps every parameter in use for DDP.

    Parameters
    ----------
    dim: latent channels ``D``.
    n_q, codebook_size, codebook_dim, decay, epsilon, kmeans_iters, dead_code_threshold, metric: see
        :class:`VectorQuantizer` and :class:`~s2slib.codec.config.CodecConfig`.
    commitment_weight: ``beta`` in ``vq_loss``.
    quantizer_dropout: probability that an example gets a random number of levels in training.
    """

    def __init__(self, dim: int, n_q: int = 8, codebook_size: int = 1024, codebook_dim: int | None = 8,
                 decay: float = 0.99, epsilon: float = 1e-5, kmeans_iters: int = 10, dead_code_threshold: float = 0.1,
                 commitment_weight: float = 0.25, quantizer_dropout: float = 0.0, metric: str = "euclidean",
                 projection: str = "orthogonal"):
        super().__init__()
        self.n_q = n_q
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.quantizer_dropout = quantizer_dropout
        self.levels = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, codebook_dim, decay, epsilon, kmeans_iters, dead_code_threshold, metric,
                            projection)
            for _ in range(n_q)
        )

    @classmethod
    def from_config(cls, config: CodecConfig) -> "ResidualVectorQuantizer":
        return cls(
            dim=config.latent_dim, n_q=config.n_q, codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim, decay=config.ema_decay, epsilon=config.ema_epsilon,
            kmeans_iters=config.kmeans_iters, dead_code_threshold=config.dead_code_threshold,
            commitment_weight=config.commitment_weight, quantizer_dropout=config.quantizer_dropout,
            metric=config.codebook_metric, projection=config.quantizer_projection,
        )

    def check_n_q(self, n_q: int | None) -> int:
        return self.n_q if n_q is None else _check_n_q(n_q, self.n_q)

    def forward(self, z: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize ``z: Tensor[B, D, T]`` with ``n_q`` levels (default: all, with quantizer dropout in training).

        Giving ``n_q`` explicitly turns quantizer dropout off for this call.
        """
        n_levels = self.check_n_q(n_q)
        B = z.shape[0]
        n_q_used = torch.full((B,), n_levels, device=z.device, dtype=torch.long)  # (B,)
        if self.training and n_q is None and self.quantizer_dropout > 0:
            dropped = torch.rand(B, device=z.device) < self.quantizer_dropout
            random_n_q = torch.randint(1, n_levels + 1, (B,), device=z.device)
            n_q_used = torch.where(dropped, random_n_q, n_q_used)
        residual = z
        z_q = torch.zeros_like(z)
        codes, commitment = [], []
        for i, level in enumerate(self.levels[:n_levels]):
            z_q_i, codes_i, commitment_i = level(residual)
            keep = (i < n_q_used).to(z.dtype)  # (B,) 1 where example b uses level i
            z_q = z_q + z_q_i * keep[:, None, None]
            residual = residual - z_q_i  # gradients flow through the residual, as through z_q (DAC, SoundStream)
            codes.append(codes_i)
            commitment.append((commitment_i * keep).mean())
        codes = torch.stack(codes, dim=1)  # (B, n_levels, T)
        commitment_loss = torch.stack(commitment)  # (n_levels,)
        stats = codebook_usage(codes.detach(), self.codebook_size)
        return QuantizerOutput(
            z_q=z_q,
            codes=codes,
            vq_loss=self.commitment_weight * commitment_loss.sum(),
            commitment_loss=commitment_loss,
            n_q_used=n_q_used,
            usage=stats["usage"],
            perplexity=stats["perplexity"],
        )

    def lookup(self) -> "RVQLookup":
        """The tables :meth:`encode` and :meth:`decode` read (:class:`RVQLookup`), built from the levels' current
        codebooks and projections and cached until any of them changes.

        A streaming encoder or decoder takes one when its stream starts, so a frame's lookups cost a few small
        matrix products and no check of whether the model changed."""
        key = tuple(_tensor_key(t) for level in self.levels
                    for t in [level.codebook, *level.parameters()])
        if key != getattr(self, "_lookup_key", None):
            self._lookup = RVQLookup.from_levels(self.levels)
            self._lookup_key = key
        return self._lookup

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        """``z: Tensor[B, D, T]`` -> ``codes: Tensor[B, n_q, T]``; never changes the codebooks."""
        return self.lookup().encode(z, self.check_n_q(n_q))

    def decode(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, n_q, T]`` (any ``1 <= n_q <= self.n_q``) -> ``z_q: Tensor[B, D, T]``."""
        return self.lookup().decode(codes)


def _check_n_q(n_q: int, levels: int) -> int:
    """``n_q`` as an int if a quantizer of ``levels`` levels can use that many, else a clear error."""
    if not 1 <= int(n_q) <= levels:
        raise ValueError(f"n_q must be between 1 and {levels} (the levels this quantizer has), got {n_q}.")
    return int(n_q)


@dataclass(frozen=True)
class RVQLookup:
    """A residual quantizer's levels as plain tables, for encoding and decoding without training machinery.

    Each level ``l`` is an affine map into its lookup space, ``z_e = W_l r + b_l`` (its ``in_proj``: an orthonormal
    basis transposed, a 1x1 convolution or the identity), its codebook ``C_l`` and the codebook already mapped
    back into the latent, ``E_l[k] = out_proj(C_l[k])``. Encoding runs the levels in turn: the nearest entry to
    ``z_e`` (the same float64 distances as :meth:`VectorQuantizer.encode`, duplicate entries never chosen), then
    ``r <- r - E_l[code]``. Decoding sums ``E_l[code_l]`` over levels: one gather, where the modules would run
    ``n_q`` lookups and projections. Both are what the levels compute, to float rounding.

    Shapes: ``in_weight (n_q, d, D)``, ``in_bias (n_q, d)``, ``codebooks (n_q, K, d)`` and ``sq_norms (n_q, K)``
    float64 (``+inf`` for a duplicate entry), ``embedded (n_q, K, D)``.
    """

    in_weight: Tensor
    in_bias: Tensor
    codebooks: Tensor
    sq_norms: Tensor
    embedded: Tensor
    cosine: bool

    @classmethod
    @torch.no_grad()
    def from_levels(cls, levels) -> "RVQLookup":
        in_weight, in_bias, codebooks, sq_norms, embedded = [], [], [], [], []
        for level in levels:
            D = level.dim
            eye = torch.eye(D, device=level.codebook.device)[None]  # (1, D, D): columns are the unit latents
            bias = level.in_proj(torch.zeros_like(eye[..., :1]))[0, :, 0]  # (d,) in_proj of the zero latent
            weight = level.in_proj(eye)[0] - bias[:, None]  # (d, D): column j is in_proj of unit latent j
            codebook = level.codebook.double()
            if level.metric == "cosine":
                codebook = F.normalize(codebook, dim=1)
            norms = codebook.pow(2).sum(1).masked_fill(level._duplicates(), float("inf"))  # (K,)
            in_weight.append(weight.float())
            in_bias.append(bias.float())
            codebooks.append(codebook)
            sq_norms.append(norms)
            embedded.append(level.out_proj(level.codebook.t()[None])[0].t().float())  # (K, D)
        return cls(torch.stack(in_weight), torch.stack(in_bias), torch.stack(codebooks), torch.stack(sq_norms),
                   torch.stack(embedded), levels[0].metric == "cosine")

    @property
    def n_q(self) -> int:
        return self.codebooks.shape[0]

    def encode(self, z: Tensor, n_q: int) -> Tensor:
        """``z: Tensor[B, D, T]`` -> ``codes: Tensor[B, n_q, T]`` (int64) with the first ``n_q`` levels."""
        B, D, T = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):  # full precision even under autocast
            residual = z.detach().float().transpose(1, 2).reshape(B * T, D)  # (N, D)
            codes = []
            for level in range(n_q):
                x = torch.addmm(self.in_bias[level], residual, self.in_weight[level].t()).double()  # (N, d)
                if self.cosine:
                    x = F.normalize(x, dim=1)
                distances = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.codebooks[level].t() + self.sq_norms[level]
                code = distances.argmin(dim=1)  # (N,); ties go to the lowest index
                residual = residual - self.embedded[level][code]
                codes.append(code)
        return torch.stack(codes, dim=1).view(B, T, n_q).transpose(1, 2).contiguous()  # (B, n_q, T)

    def decode(self, codes: Tensor) -> Tensor:
        """``codes: Tensor[B, n_q, T]`` (integers, any ``1 <= n_q <=`` the levels held) -> ``z_q: Tensor[B, D, T]``."""
        if codes.ndim != 3:
            raise ValueError(f"codes must have shape (B, n_q, T), got {tuple(codes.shape)}.")
        n_q, K = _check_n_q(codes.shape[1], self.n_q), self.codebooks.shape[1]
        if codes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"codes must be integers, got {codes.dtype}.")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= K):
            raise ValueError(f"codes must lie in [0, {K}), got values in [{int(codes.min())}, {int(codes.max())}].")
        levels = torch.arange(n_q, device=codes.device)[None, :, None]  # (1, n_q, 1)
        return self.embedded[levels, codes.long()].sum(dim=1).transpose(1, 2).contiguous()  # (B, D, T)
