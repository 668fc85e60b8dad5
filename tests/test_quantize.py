"""Tests of the residual vector quantizer: straight-through gradients, EMA, k-means, dead codes, dropout, RVQ."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from s2slib.codec.config import CodecConfig
from s2slib.codec.quantize import ResidualVectorQuantizer, VectorQuantizer, distinct_rows, kmeans, repeated_rows


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clusters(centers: torch.Tensor, per_cluster: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """Points around ``centers`` (C, D) laid out as a latent (1, D, C * per_cluster), clusters interleaved."""
    C, D = centers.shape
    points = centers[:, None, :] + std * torch.randn(C, per_cluster, D, generator=generator)  # (C, n, D)
    points = points.transpose(0, 1).reshape(C * per_cluster, D)  # (n * C, D)
    return points.t()[None]  # (1, D, n * C)


def _nearest_distance(points: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Distance from each row of ``points`` (N, D) to its nearest codebook row -> (N,)."""
    return torch.cdist(points, codebook).min(dim=1).values


# ---------------------------------------------------------------------------------------------------- one level
def test_straight_through_gradient_is_identity_without_projection():
    vq = VectorQuantizer(dim=4, codebook_size=16, codebook_dim=None, kmeans_iters=0).eval()
    z = torch.randn(2, 4, 10, requires_grad=True)
    z_q, codes, _ = vq(z)
    assert torch.allclose(z_q, vq.codebook[codes].permute(0, 2, 1))  # forward value: the codes' vectors
    (z_q * torch.arange(10.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(10.0).expand(2, 4, 10))  # backward: as if z_q were z


def test_gradient_reaches_the_encoder_through_the_codec():
    from s2slib.codec.model import Codec

    codec = Codec(CodecConfig.tiny()).train()
    out = codec(0.3 * torch.randn(2, 1, 800))
    out.wav_hat.pow(2).mean().backward()  # reconstruction only: the path goes through the quantizer
    first_conv = codec.encoder.layers[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_commitment_loss_pulls_the_input_towards_its_code():
    vq = VectorQuantizer(dim=3, codebook_size=4, codebook_dim=None, kmeans_iters=0).eval()
    z = torch.randn(1, 3, 5, requires_grad=True)
    _, codes, commitment = vq(z)
    code_vectors = vq.codebook[codes].permute(0, 2, 1)  # (1, 3, 5)
    assert torch.allclose(commitment, (z - code_vectors).pow(2).mean(dim=(1, 2)))
    commitment.sum().backward()
    assert torch.allclose(z.grad, 2 * (z - code_vectors).detach() / z[0].numel())  # gradient of the MSE
    assert vq.codebook.grad is None  # the codebook learns by EMA, not by gradient


def test_kmeans_initialisation_sets_codebook_from_data():
    g = torch.Generator().manual_seed(1)
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    z = _clusters(centers, per_cluster=64, std=0.1, generator=g)  # (1, 2, 256)
    vq = VectorQuantizer(dim=2, codebook_size=16, codebook_dim=None, kmeans_iters=10, dead_code_threshold=0.0)
    assert not vq.initialized
    before = vq.codebook.clone()
    assert _nearest_distance(centers, before).max() > 1.0  # the random start is nowhere near the data
    vq.train()(z)
    assert vq.initialized
    assert _nearest_distance(centers, vq.codebook).max() < 0.2  # every cluster has an entry at its centre
    assert _nearest_distance(vq.codebook, centers).max() < 0.5  # and every entry sits in some cluster
    fitted = vq.codebook.clone()
    vq(z + 100)  # a second batch far away: no second k-means, only an EMA step of 1 %
    assert _nearest_distance(fitted, vq.codebook).max() < 2.0


def test_kmeans_is_not_run_in_eval_mode():
    vq = VectorQuantizer(dim=2, codebook_size=8, codebook_dim=None, kmeans_iters=5).eval()
    before = vq.codebook.clone()
    vq(torch.randn(1, 2, 100) + 50)
    assert torch.equal(vq.codebook, before) and not vq.initialized


def test_kmeans_function_improves_on_its_start_and_converges_to_cluster_means():
    g = torch.Generator().manual_seed(2)
    centers = torch.tensor([[0.0, 10.0], [10.0, 0.0], [0.0, 0.0], [10.0, 10.0]])
    x = _clusters(centers, 50, 1.0, g)[0].t()  # (200, 2)

    def inertia(centroids):
        return float(_nearest_distance(x, centroids).pow(2).sum())

    torch.manual_seed(5)
    start, _ = kmeans(x, 4, iters=0)  # the random data points Lloyd starts from
    torch.manual_seed(5)
    centroids, counts = kmeans(x, 4, iters=20)
    assert inertia(centroids) < 0.5 * inertia(start)
    assert counts.sum() == 200
    # Lloyd's fixed point: each centroid is the mean of the points nearest to it
    assign = torch.cdist(x, centroids).argmin(dim=1)
    for k in range(4):
        assert torch.allclose(centroids[k], x[assign == k].mean(dim=0), atol=1e-4)


def test_ema_update_moves_codebook_towards_data():
    vq = VectorQuantizer(dim=2, codebook_size=4, codebook_dim=None, decay=0.9, kmeans_iters=0, dead_code_threshold=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
        vq.embed_sum.copy_(vq.codebook * vq.cluster_size[:, None])
    target = torch.tensor([2.0, 1.0])
    z = (target[:, None] + 0.01 * torch.randn(2, 50))[None]  # (1, 2, 50) all nearest to entry 0
    vq.train()
    distances = []
    for _ in range(30):
        vq(z)
        distances.append(float((vq.codebook[0] - target).norm()))
    assert distances[0] < 2.236  # the first step already moved it from (0, 0), which is sqrt(5) away
    assert all(b <= a + 1e-6 for a, b in zip(distances, distances[1:]))  # monotonically closer
    assert distances[-1] < 0.05
    # unused entries stay put, up to the slow pull of Laplace smoothing towards 0
    assert torch.allclose(vq.codebook[1:], torch.tensor([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]), atol=0.01)


def test_ema_laplace_smoothing_keeps_unused_codes_finite():
    vq = VectorQuantizer(dim=2, codebook_size=8, codebook_dim=None, kmeans_iters=0, dead_code_threshold=0.0).train()
    for _ in range(5):
        vq(torch.zeros(1, 2, 20) + 3.0)
    assert torch.isfinite(vq.codebook).all()


def test_dead_code_reset_replaces_unused_codes_with_batch_vectors():
    g = torch.Generator().manual_seed(3)
    centers = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    z = _clusters(centers, 32, 0.05, g)  # (1, 2, 128)
    vq = VectorQuantizer(dim=2, codebook_size=8, codebook_dim=None, kmeans_iters=5, dead_code_threshold=0.1).train()
    vq(z)  # k-means initialisation
    with torch.no_grad():  # kill entries 6 and 7: far from the data, with no usage
        vq.codebook[6:] = torch.tensor([[1000.0, 1000.0], [-1000.0, 1000.0]])
        vq.cluster_size[6:] = 0.0
        vq.embed_sum[6:] = 0.0
    alive = vq.codebook[:6].clone()
    vq(z)
    new = vq.codebook[6:]
    assert (new.abs() < 2).all()  # moved onto the data
    assert _nearest_distance(new, z[0].t()).max() < 0.05  # in fact onto batch vectors
    assert not torch.allclose(new[0], new[1])  # distinct ones
    assert (vq.cluster_size[6:] > 0).all()
    assert (vq.codebook[:6] - alive).abs().max() < 0.1  # live entries only took an EMA step


def test_codes_are_the_same_for_any_batch_shape_even_with_duplicate_entries():
    vq = VectorQuantizer(dim=3, codebook_size=6, codebook_dim=None, kmeans_iters=0).eval()
    with torch.no_grad():
        vq.codebook[3] = vq.codebook[1]  # an exact duplicate, as k-means on silent frames can produce
    z = torch.randn(2, 3, 40)
    z[..., :20] = vq.codebook[1][None, :, None]
    offline = vq.encode(z)
    one_by_one = torch.cat([vq.encode(z[..., t:t + 1]) for t in range(40)], dim=-1)
    assert torch.equal(offline, one_by_one)
    assert (offline != 3).all()  # the lower index wins the tie


@pytest.mark.parametrize("values", ["floats", "few integers", "shared first column"])
def test_row_helpers_match_torch_unique(values):
    gen = torch.Generator().manual_seed(3)
    for n, d in [(1, 4), (2, 1), (37, 3), (1024, 8)]:
        if values == "floats":
            x = torch.randn(n, d, generator=gen)
            x[torch.randint(0, n, (n // 3,), generator=gen)] = x[torch.randint(0, n, (n // 3,), generator=gen)]
        elif values == "few integers":  # many repeats, and rows that tie on some columns only
            x = torch.randint(-2, 3, (n, d), generator=gen).float()
        else:
            x = torch.randn(n, d, generator=gen)
            x[:, 0] = torch.randint(0, 3, (n,), generator=gen).float()
        assert torch.equal(distinct_rows(x), torch.unique(x, dim=0))
        index = torch.arange(n)
        _, group = torch.unique(x, dim=0, return_inverse=True)
        first = torch.full_like(index, n).scatter_reduce(0, group, index, reduce="amin")
        assert torch.equal(repeated_rows(x), first[group] != index)  # equal to a row with a lower index
    assert distinct_rows(torch.zeros(0, 3)).shape == (0, 3)


def test_cosine_metric_compares_directions():
    z = torch.tensor([0.5, 0.5]).view(1, 2, 1)
    for metric, expected in [("euclidean", 0), ("cosine", 1)]:
        vq = VectorQuantizer(dim=2, codebook_size=2, codebook_dim=None, kmeans_iters=0, metric=metric).eval()
        with torch.no_grad():
            vq.codebook.copy_(torch.tensor([[1.0, 0.0], [10.0, 10.0]]))
        assert int(vq.encode(z)) == expected  # (1, 0) is closer; (10, 10) points the same way
    with pytest.raises(ValueError, match="metric"):
        VectorQuantizer(dim=2, codebook_size=2, metric="manhattan")


# ---------------------------------------------------------------------------------------------------- residual VQ
def _trained_rvq(n_q: int = 4, codebook_dim: int | None = 4,
                 steps: int = 10) -> tuple[ResidualVectorQuantizer, torch.Tensor]:
    """An RVQ fitted to Gaussian data: EMA codebooks, plus Adam on the projections (as the codec's loss would)."""
    rvq = ResidualVectorQuantizer(dim=8, n_q=n_q, codebook_size=32, codebook_dim=codebook_dim, kmeans_iters=5).train()
    data = torch.randn(4, 8, 100)
    params = list(rvq.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2) if params else None
    for _ in range(steps):
        out = rvq(data)
        if optimizer:
            optimizer.zero_grad()
            ((out.z_q - data).pow(2).mean() + out.vq_loss).backward()
            optimizer.step()
    return rvq.eval(), data


@pytest.mark.parametrize("codebook_dim, steps", [(None, 10), (4, 100)], ids=["full-dim", "projected"])
def test_more_levels_reconstruct_better(codebook_dim, steps):
    rvq, z = _trained_rvq(n_q=4, codebook_dim=codebook_dim, steps=steps)
    with torch.no_grad():
        errors = [float((rvq.decode(rvq.encode(z, n_q=k)) - z).pow(2).mean()) for k in range(1, 5)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_forward_and_encode_decode_agree_in_eval():
    rvq, z = _trained_rvq(n_q=3)
    out = rvq(z)
    assert torch.equal(out.codes, rvq.encode(z))
    assert torch.allclose(out.z_q, rvq.decode(out.codes), atol=1e-5)
    assert list(out.codes.shape) == [4, 3, 100]
    assert out.usage.shape == (3,) and out.perplexity.shape == (3,)
    assert (out.perplexity > 1).all() and (out.usage > 0).all()


@pytest.mark.parametrize("projection, codebook_dim, metric", [("orthogonal", 4, "euclidean"), ("free", 4, "euclidean"),
                                                               ("free", 4, "cosine"), ("orthogonal", None, "euclidean")],
                         ids=["orthogonal", "free", "free-cosine", "full-dim"])
def test_lookup_tables_equal_the_levels_own_encode_and_decode(projection, codebook_dim, metric):
    """:class:`RVQLookup` (what encode, decode and streaming run) gives the codes and latents that running each
    level's own ``encode``/``decode`` in turn gives, for every kind of projection and metric; and its cache follows
    a codebook change."""
    rvq = ResidualVectorQuantizer(dim=8, n_q=4, codebook_size=32, codebook_dim=codebook_dim, kmeans_iters=5,
                                  projection=projection, metric=metric).train()
    z = torch.randn(3, 8, 60)
    for _ in range(3):
        rvq(z)  # k-means and EMA updates: trained codebooks
    rvq.eval()
    with torch.no_grad():
        residual, by_level = z, []
        for level in rvq.levels:
            codes_i = level.encode(residual)
            residual = residual - level.decode(codes_i)
            by_level.append(codes_i)
        by_level = torch.stack(by_level, dim=1)  # (B, n_q, T)
        assert len(by_level.unique()) > 20  # the comparison is not vacuous
        assert torch.equal(rvq.encode(z), by_level)
        assert torch.equal(rvq.encode(z, n_q=2), by_level[:, :2])
        summed = sum(level.decode(by_level[:, i]) for i, level in enumerate(rvq.levels))
        assert torch.allclose(rvq.decode(by_level), summed, atol=1e-5)
        assert rvq.lookup() is rvq.lookup()  # cached while nothing changes ...
        tables = rvq.lookup()
        rvq.levels[0].codebook.mul_(2.0)  # ... and rebuilt when a codebook does
        assert rvq.lookup() is not tables
        assert torch.allclose(rvq.decode(by_level[:, :1]), rvq.levels[0].decode(by_level[:, 0]), atol=1e-5)


@pytest.mark.parametrize("projection", ["orthogonal", "free"])
def test_cached_tables_follow_a_fused_optimizer_step(projection):
    """The course's AdamW (:func:`s2slib.training.adamw`, the fused kernel, which writes the weights without moving
    their version counters) still invalidates the quantizer's cached projections and lookup tables: validation
    between two training steps quantizes with the weights as they are, not as they were at the last validation."""
    from s2slib.training import adamw

    rvq = ResidualVectorQuantizer(dim=8, n_q=3, codebook_size=16, codebook_dim=4, kmeans_iters=2, projection=projection)
    optimizer = adamw(rvq.parameters(), lr=0.05)
    assert optimizer.defaults["fused"]
    z = torch.randn(2, 8, 40)
    rvq.train()
    rvq(z)  # k-means: trained codebooks
    rvq.eval()
    with torch.no_grad():
        before = rvq.lookup()
        rvq.encode(z)  # builds and caches every table
    rvq.train()
    for _ in range(3):
        optimizer.zero_grad()
        out = rvq(z)
        ((out.z_q - z).pow(2).mean() + out.vq_loss).backward()
        optimizer.step()
    rvq.eval()
    with torch.no_grad():
        fresh = copy.deepcopy(rvq)
        for level in fresh.levels:  # forget every cache: tables built from the weights as they are now
            level._duplicates_key = None
            if projection == "orthogonal":
                level.basis._cache_key = None
        fresh._lookup_key = None
        assert rvq.lookup() is not before
        codes = rvq.encode(z)
        assert torch.equal(codes, fresh.encode(z))
        assert torch.allclose(rvq.decode(codes), fresh.decode(codes), atol=1e-6)


def test_quantizer_dropout_varies_levels_in_training_only():
    rvq = ResidualVectorQuantizer(dim=8, n_q=6, codebook_size=16, codebook_dim=4, kmeans_iters=2,
                                  quantizer_dropout=1.0).train()
    z = torch.randn(64, 8, 5)
    rvq(z)  # k-means
    before = copy.deepcopy(rvq)  # the codebooks this step looks codes up in (the step then updates them)
    out = rvq(z)
    used = out.n_q_used
    assert used.min() >= 1 and used.max() <= 6 and len(used.unique()) >= 4  # many different bit rates
    b = int((used == 2).nonzero()[0, 0])  # an example that kept two levels ...
    with torch.no_grad():
        two_levels = before.levels[0].decode(out.codes[b:b + 1, 0]) + before.levels[1].decode(out.codes[b:b + 1, 1])
    assert torch.allclose(out.z_q[b:b + 1], two_levels, atol=1e-5)  # ... is decoded from exactly those
    assert out.codes.shape[1] == 6  # every level still ran (for the EMA and for DDP)
    assert torch.equal(rvq(z, n_q=3).n_q_used, torch.full((64,), 3))  # an explicit n_q turns dropout off
    rvq.eval()
    assert torch.equal(rvq(z).n_q_used, torch.full((64,), 6))


def test_quantizer_dropout_probability():
    rvq = ResidualVectorQuantizer(dim=8, n_q=8, codebook_size=16, codebook_dim=4, kmeans_iters=2,
                                  quantizer_dropout=0.5).train()
    used = rvq(torch.randn(400, 8, 2)).n_q_used
    full = float((used == 8).float().mean())  # 0.5 kept + 0.5 * 1/8 drawn as 8
    assert 0.45 < full < 0.68


def test_vq_loss_is_weighted_commitment():
    rvq = ResidualVectorQuantizer(dim=8, n_q=2, codebook_size=16, codebook_dim=4, commitment_weight=0.25)
    out = rvq.train()(torch.randn(2, 8, 30))
    assert torch.allclose(out.vq_loss, 0.25 * out.commitment_loss.sum())
    assert out.vq_loss.requires_grad


def test_decode_rejects_bad_codes():
    rvq = ResidualVectorQuantizer(dim=8, n_q=2, codebook_size=16, codebook_dim=4)
    with pytest.raises(ValueError, match="between 1 and 2"):
        rvq.decode(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        rvq.decode(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        rvq.decode(torch.zeros(1, 2, 4))


def test_codebooks_survive_a_state_dict_round_trip():
    rvq, z = _trained_rvq(n_q=2, steps=3)
    clone = ResidualVectorQuantizer(dim=8, n_q=2, codebook_size=32, codebook_dim=4, kmeans_iters=5)
    clone.load_state_dict(rvq.state_dict())
    assert all(bool(level.initialized) for level in clone.levels)  # no second k-means after loading
    assert torch.equal(clone.eval().encode(z), rvq.encode(z))


# ---------------------------------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same initial weights on both ranks, as DDP guarantees
    vq = VectorQuantizer(dim=2, codebook_size=8, codebook_dim=None, decay=0.5, kmeans_iters=3,
                         dead_code_threshold=0.5).train()
    torch.manual_seed(100 + rank)  # different data on each rank
    for _ in range(3):
        vq(torch.randn(1, 2, 50) + 3 * rank)
    results[rank] = (vq.codebook.clone(), vq.cluster_size.clone())
    dist.destroy_process_group()


@pytest.mark.slow
def test_codebooks_stay_identical_across_processes():
    """Two gloo processes see different data; all-reduced EMA statistics and broadcast k-means/resets keep the
    codebooks equal."""
    world_size = 2
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(world_size, _free_port(), results), nprocs=world_size, join=True)
    (c0, n0), (c1, n1) = results[0], results[1]
    assert torch.allclose(c0, c1) and torch.allclose(n0, n1)
    # k-means counts rank 0's 50 vectors; with decay 0.5 the EMA total then heads for the summed 100 per step
    assert n0.sum() > 80
