import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from askknn.bank import FeatureBank, normalise
from askknn.dknn import DeepKNN, tie_rate
from askknn.shared import ParamError


@pytest.fixture
def random_bank():
    rng = np.random.default_rng(0)
    feats = {"conv3": rng.normal(size=(300, 12)).astype(np.float32),
             "conv4": rng.normal(size=(300, 6)).astype(np.float32)}
    labels = np.repeat(np.arange(5), 60)
    queries = {k: rng.normal(size=(80, v.shape[1])).astype(np.float32) for k, v in feats.items()}
    return FeatureBank(feats, labels), queries


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("k", [1, 5, 8])
def test_single_layer_dknn_equals_sklearn_brute_force(random_bank, metric, k):
    bank, queries = random_bank
    ours = DeepKNN(bank, ["conv3"], k, metric).predict(queries)
    prep = normalise if metric == "cosine" else (lambda a: a)
    ref = KNeighborsClassifier(k, algorithm="brute").fit(prep(bank.features["conv3"]), bank.labels)
    neighbours = bank.labels[ref.kneighbors(prep(queries["conv3"]), return_distance=False)]
    expected = []   # sklearn's vote, with our tie rule: the nearest neighbour of a tied class
    for row in neighbours:
        counts = np.bincount(row, minlength=5)
        expected.append(next(c for c in row if counts[c] == counts.max()))
    np.testing.assert_array_equal(ours, expected)
    untied = [(np.bincount(r, minlength=5) == np.bincount(r).max()).sum() == 1 for r in neighbours]
    np.testing.assert_array_equal(ours[untied], ref.predict(prep(queries["conv3"]))[untied])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_search_equals_brute_force(random_bank, metric):
    bank, queries = random_bank
    dist, idx = bank.search("conv4", metric, queries["conv4"], 7)
    prep = normalise if metric == "cosine" else (lambda a: a)
    d = ((prep(queries["conv4"])[:, None] - prep(bank.features["conv4"])[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, np.argsort(d, axis=1)[:, :7])
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :7], rtol=1e-4, atol=1e-4)
    cdist, cidx = bank.search_per_class("conv4", metric, queries["conv4"], 3)
    for c in range(5):
        masked = np.where(bank.labels == c, d, np.inf)
        np.testing.assert_array_equal(cidx[:, c], np.argsort(masked, axis=1)[:, :3])


def assert_same_up_to_ties(idx_a, idx_b, true_dist, tol=1e-4):
    """Two k-nearest lists agree up to ties: every point either list holds is no farther than the other
    list's k-th point (within tol), and both lists hold k distinct points."""
    for a, b, d in zip(idx_a, idx_b, true_dist):
        assert len(set(a)) == len(set(b)) == len(a)
        assert d[a].max() <= d[b].max() + tol and d[b].max() <= d[a].max() + tol
        assert set(a) ^ set(b) <= set(np.flatnonzero(np.abs(d - d[a].max()) <= tol))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("class_sizes", [[80] * 5, [100, 60, 80, 90, 70]])
def test_torch_search_finds_the_faiss_neighbours(metric, class_sizes):
    """The device search (torch, here on the CPU) against faiss, with exact ties built in: a quarter of
    the bank repeats other points, so several neighbours lie at the same distance. Unequal classes
    exercise the padded class blocks of the per-class search."""
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(400, 24)).astype(np.float32)
    feats[300:] = feats[:100]
    labels = rng.permutation(np.repeat(np.arange(5), class_sizes))
    queries = rng.normal(size=(60, 24)).astype(np.float32)
    faiss_bank = FeatureBank({"conv4": feats}, labels, search="faiss")
    torch_bank = FeatureBank({"conv4": feats}, labels, search="torch", device="cpu")
    prep = normalise if metric == "cosine" else (lambda a: a)
    true = ((prep(queries)[:, None].astype(np.float64) - prep(feats)[None]) ** 2).sum(-1)
    (fd, fi), (td, ti) = (b.search("conv4", metric, torch.from_numpy(queries), 9) for b in (faiss_bank, torch_bank))
    np.testing.assert_allclose(td, fd, rtol=1e-4, atol=1e-4)
    assert_same_up_to_ties(fi, ti, true)
    (fd, fi), (td, ti) = (b.search_per_class("conv4", metric, queries, 4) for b in (faiss_bank, torch_bank))
    np.testing.assert_allclose(td, fd, rtol=1e-4, atol=1e-4)
    for c in range(5):
        masked = np.where(labels == c, true, np.inf)
        assert_same_up_to_ties(fi[:, c], ti[:, c], masked)


def test_an_unknown_search_is_refused():
    with pytest.raises(ParamError, match="bank search = 'annoy' is not allowed"):
        FeatureBank({"conv4": np.zeros((4, 2), np.float32)}, np.arange(4) % 2, search="annoy")


def test_multi_layer_vote_sums_the_layer_histograms_and_breaks_ties_by_the_nearest_tied_neighbour(random_bank):
    bank, queries = random_bank
    dknn = DeepKNN(bank, ["conv3", "conv4"], 4, "l2")
    labels = dknn.neighbour_labels(queries)
    scores = sum(np.stack([(lab == c).mean(1) for c in range(5)], 1) for lab in labels.values())
    np.testing.assert_allclose(dknn.class_scores(queries), scores)
    expected = []
    for i, row in enumerate(scores):
        tied = set(np.flatnonzero(row == row.max()).tolist())
        by_rank = [labels[layer][i, r] for r in range(4) for layer in ("conv3", "conv4")]
        expected.append(next(c for c in by_rank if c in tied))
    np.testing.assert_array_equal(dknn.predict(queries), expected)


def test_k_larger_than_a_class_share_is_rejected(random_bank):
    bank, _ = random_bank
    with pytest.raises(ParamError, match="dknn.k = 61 is larger than a class's share of the bank \\(60\\)"):
        DeepKNN(bank, ["conv3"], 61)
    with pytest.raises(ParamError, match="conv5"):
        DeepKNN(bank, ["conv5"], 5)


def test_exact_vote_ties_go_to_the_class_of_the_nearest_tied_neighbour_not_the_smallest_index(random_bank):
    """Class 0 gets 0/5 + 3/5 and class 1 gets 1/5 + 2/5 votes: an exact tie (float fractions would
    break it, 0.2 + 0.4 > 0.6 in binary floating point). Class 1 is conv3's nearest neighbour and
    outranks class 0, so class 1 wins; swapping the rank-0 labels makes class 0 win."""
    bank, queries = random_bank
    dknn = DeepKNN(bank, ["conv3", "conv4"], 5, "l2")
    dknn.neighbour_labels = lambda features: {"conv3": np.array([[1, 2, 3, 4, 2]]),
                                              "conv4": np.array([[0, 0, 0, 1, 1]])}
    np.testing.assert_array_equal(dknn.vote_counts(None), [[3, 3, 2, 1, 1]])
    np.testing.assert_array_equal(dknn.predict(None), [1])
    dknn.neighbour_labels = lambda features: {"conv3": np.array([[2, 1, 3, 4, 2]]),
                                              "conv4": np.array([[0, 0, 0, 1, 1]])}
    np.testing.assert_array_equal(dknn.predict(None), [0])   # rank 0: conv3 gives 2 (not tied), conv4 gives 0
    assert tie_rate(dknn.vote_counts(None)) == 1.0
    assert tie_rate(np.array([[3, 1], [2, 2]])) == 0.5


def test_calibrated_p_values_and_credibility_follow_papernot_and_mcdaniel():
    # one layer, K = 3, two classes on a line: class 0 at 0..2, class 1 at 10..12
    bank = FeatureBank({"conv4": np.array([[0.0], [1], [2], [10], [11], [12]], dtype=np.float32)},
                       np.array([0, 0, 0, 1, 1, 1]))
    dknn = DeepKNN(bank, ["conv4"], 3, "l2")
    # calibration inputs and their nonconformity alpha = neighbours not of the true label
    calib = np.array([[1.0], [11], [4.5], [6.8]], dtype=np.float32)
    dknn.calibrate({"conv4": calib}, np.array([0, 1, 0, 0]))
    # neighbours: 1 -> 0,0,0 (alpha 0); 11 -> 1,1,1 (0); 4.5 -> 2,1,0: 0,0,0 (0); 6.8 -> 10,11,2: 1,1,0 (2)
    assert dknn.calibration.tolist() == [0, 0, 0, 2]
    counts = np.array([[3, 0], [1, 2]])   # alpha for class 0 / 1: [0, 3] and [2, 1]
    assert dknn.p_values(counts).tolist() == [[1.0, 0.0], [0.25, 0.25]]
    assert dknn.credibility(counts).tolist() == [1.0, 0.25]
    assert dknn.predict_calibrated({"conv4": np.array([[0.5], [11.5]], dtype=np.float32)}).tolist() == [0, 1]


def test_an_uncalibrated_dknn_has_no_p_values(random_bank):
    bank, _ = random_bank
    with pytest.raises(ParamError, match="not calibrated"):
        DeepKNN(bank, ["conv4"], 3, "cosine").p_values(np.zeros((1, 5)))
