import pytest
import torch

from digitpipe.data.split import class_quotas, stratified_split
from digitpipe.errors import ConfigError


@pytest.fixture
def labels():
    counts = [100, 200, 50, 150]  # imbalanced classes
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[torch.randperm(500)]


def test_quotas_sum_to_the_requested_size_and_follow_class_shares():
    quotas = class_quotas(torch.tensor([100, 200, 50, 150]), 51)
    assert quotas.sum() == 51
    assert quotas.tolist() == [10, 21, 5, 15]


def test_split_is_a_disjoint_cover_of_all_indices(labels):
    train, val = stratified_split(labels, 50, seed=0)
    assert len(val) == 50 and len(train) == 450
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(500))


def test_validation_keeps_each_class_share(labels):
    _, val = stratified_split(labels, 50, seed=0)
    assert torch.bincount(labels[val]).tolist() == [10, 20, 5, 15]


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one(labels):
    assert torch.equal(stratified_split(labels, 50, 7)[1], stratified_split(labels, 50, 7)[1])
    assert not torch.equal(stratified_split(labels, 50, 7)[1], stratified_split(labels, 50, 8)[1])


@pytest.mark.parametrize("size", [0, 500, 600])
def test_an_impossible_validation_size_names_the_limit(labels, size):
    with pytest.raises(ConfigError, match=r"data.val_size=\d+ must be between 1 and 499"):
        stratified_split(labels, size, seed=0)
