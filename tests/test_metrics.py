import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from vgae_toolkit.metrics import average_precision, link_scores, roc_auc


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_ap_match_sklearn(ties):
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n = int(torch.randint(4, 60, (1,), generator=gen))
        scores = torch.randint(0, 4, (n,), generator=gen).float() if ties else torch.randn(n, generator=gen)
        labels = torch.randint(0, 2, (n,), generator=gen)
        labels[0], labels[1] = 0, 1
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_perfect_and_reversed_ranking():
    pos, neg = torch.tensor([3.0, 2.0]), torch.tensor([1.0, 0.0])
    assert link_scores(pos, neg) == {"auc": 1.0, "ap": 1.0}
    assert link_scores(neg, pos)["auc"] == 0.0


def test_one_class_is_an_error():
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc(torch.rand(5), torch.ones(5))
