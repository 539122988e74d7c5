"""Input sharding over processes, streamed path: grain over ``tfds.data_source`` (tfds.testing.mock_data).

Each example's id is put in its label, so the ids in the batches a process reads are the examples
it read. With P processes, per epoch: the processes' ids are disjoint and together every kept
example once; evaluation covers the split once (mask), each process the same number of batches.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from extremeq.data import imagenet as inet


class WithIds:
    """A random-access source whose example ``i`` carries ``label = i``."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return dict(self.source[i], label=np.int64(i))


def _train_ids(source, *, processes, local_batch, epochs):
    """[epoch][process]: the ids process p reads in epoch e (as the training loop iterates)."""
    global_batch = local_batch * processes
    steps = len(source) // global_batch
    out = [[[] for _ in range(processes)] for _ in range(epochs)]
    for p in range(processes):
        ds = inet.imagenet_dataset(
            source, train=True, batch_size=local_batch, image_size=8, seed=5, num_epochs=None, num_shards=processes
        )
        it = inet.imagenet_iterator(inet.process_shard(ds, p, processes))
        for step in range(epochs * steps):
            batch = next(it)
            assert batch["mask"].all() and batch["label"].shape == (local_batch,)
            out[step // steps][p].extend(batch["label"].tolist())
    return out


@pytest.mark.parametrize("processes", [1, 2])
def test_train_shards_are_disjoint_and_cover_each_epoch_once(processes):
    with tfds.testing.mock_data(num_examples=45):  # 45 = 5 global batches of 8 + a remainder of 5
        source = WithIds(inet.imagenet_source("train"))
        ids = _train_ids(source, processes=processes, local_batch=8 // processes, epochs=3)
    for epoch in ids:
        if processes == 2:
            assert not set(epoch[0]) & set(epoch[1])
            assert len(epoch[0]) == len(epoch[1]) == 20
        seen = [i for part in epoch for i in part]
        assert len(seen) == len(set(seen)) == 40  # 5 steps x 8, each example at most once
        assert set(seen) <= set(range(45))
    assert ids[0] != ids[1]  # a new permutation each epoch


def test_global_steps_do_not_depend_on_the_process_count():
    with tfds.testing.mock_data(num_examples=45):
        source = WithIds(inet.imagenet_source("train"))
        one = _train_ids(source, processes=1, local_batch=8, epochs=2)
        two = _train_ids(source, processes=2, local_batch=4, epochs=2)
    for e in range(2):
        for s in range(5):  # global step s = local batches 2s (process 0) and 2s + 1 (process 1)
            assert one[e][0][8 * s : 8 * s + 8] == two[e][0][4 * s : 4 * s + 4] + two[e][1][4 * s : 4 * s + 4]


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_evaluation_covers_the_split_once(processes):
    with tfds.testing.mock_data(num_examples=23):
        source = WithIds(inet.imagenet_source("validation"))
        counted, batches = [], []
        for p in range(processes):
            ds = inet.imagenet_dataset(source, train=False, batch_size=4, image_size=8, num_shards=processes)
            shard = list(inet.imagenet_iterator(inet.process_shard(ds, p, processes)))
            batches.append(len(shard))
            counted += [int(i) for b in shard for i in b["label"][b["mask"]]]
    assert sorted(counted) == list(range(23))
    assert len(set(batches)) == 1  # every process runs the same number of evaluation batches
    assert batches[0] == -(-23 // (4 * processes))


def test_process_shard_refuses_a_bad_index():
    with pytest.raises(ValueError, match="process_index 2"):
        inet.process_shard(None, 2, 2)
