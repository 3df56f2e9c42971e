"""Device-resident batching: which indices each rank sees per epoch, and the batches drawn from them."""

from __future__ import annotations

import torch

from digitpipe.data.batches import EpochOrder, IndexBatches, Split


def visited(order: EpochOrder, epoch: int = 0) -> list[int]:
    return order.indices(epoch).tolist()


def test_a_shuffled_epoch_visits_every_index_once_and_the_order_depends_on_seed_and_epoch_only():
    order = EpochOrder(10, shuffle=True, seed=3)
    first = visited(order)
    assert sorted(first) == list(range(10))
    torch.manual_seed(0)  # the global RNG plays no part: a resume or a diagnostics probe can't move it
    assert visited(EpochOrder(10, shuffle=True, seed=3)) == first
    assert visited(order, epoch=1) != first
    assert visited(EpochOrder(10, shuffle=True, seed=4)) != first


def test_shuffled_ranks_split_one_permutation_and_pad_so_every_rank_runs_the_same_steps():
    ranks = [EpochOrder(10, shuffle=True, seed=3, rank=r, world_size=3) for r in range(3)]
    shards = [visited(r) for r in ranks]
    assert [len(s) for s in shards] == [4, 4, 4] == [len(r) for r in ranks]
    together = sorted(i for s in shards for i in s)
    assert set(together) == set(range(10)) and len(together) == 12  # two indices wrap around
    whole = visited(EpochOrder(10, shuffle=True, seed=3))
    assert shards[0] == [whole[0], whole[3], whole[6], whole[9]]


def test_unshuffled_ranks_share_the_split_without_repeating_an_index():
    shards = [visited(EpochOrder(10, shuffle=False, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert [len(EpochOrder(10, shuffle=False, seed=3, rank=r, world_size=3)) for r in range(3)] == [4, 3, 3]


def test_batches_follow_the_order_and_the_last_one_is_smaller():
    split = Split(torch.arange(10, dtype=torch.uint8).view(10, 1, 1).expand(10, 2, 2), torch.arange(10) * 10)
    batches = IndexBatches(split, batch_size=4, order=EpochOrder(10, shuffle=True, seed=1), epoch=lambda: 0)
    drawn = list(batches)
    assert len(batches) == len(drawn) == 3 and [len(labels) for _, labels in drawn] == [4, 4, 2]
    labels = torch.cat([labels for _, labels in drawn])
    assert labels.tolist() == [10 * i for i in visited(EpochOrder(10, shuffle=True, seed=1))]
    assert all(torch.equal(images[:, 0, 0].long() * 10, labels) for images, labels in drawn)


def test_each_iteration_draws_the_order_of_the_epoch_it_is_in():
    """The Trainer's current epoch, read when an epoch's iteration starts (a resume starts there too)."""
    epoch, order = [0], EpochOrder(6, True, seed=0)
    batches = IndexBatches(Split(torch.zeros(6, 1, 1), torch.arange(6)), 6, order, lambda: epoch[0])
    first = [labels.tolist() for _, labels in batches]
    epoch[0] = 4
    fifth = [labels.tolist() for _, labels in batches]
    assert first == [visited(order, 0)] and fifth == [visited(order, 4)] and first != fifth
