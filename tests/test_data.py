import pytest
import torch

from clipbook.core.data import (DataNotFoundError, ImageData, load_images, noisy_pairs, regression_data,
                           regression_target, split_indices, split_lipschitz)


def test_missing_data_folder_names_folder_variable_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPBOOK_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as err:
        load_images("mnist")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg
    assert "CLIPBOOK_DATA" in msg and "train-images-idx3-ubyte" in msg and "python -m clipbook data" in msg
    assert "../shared" not in msg


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_images("cifar")


def test_mnist_split_sizes_and_ranges(mnist_split):
    sp = mnist_split
    assert sp.x_train.shape == (53000, 1, 28, 28) and sp.x_lip.shape == (6000, 1, 28, 28)
    assert sp.x_test.shape == (10000, 1, 28, 28) and len(sp.x_val) == 1000
    assert sp.x_train.min() >= 0 and sp.x_train.max() <= 1 and sp.y_train.dtype == torch.int64


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 17])
def test_lipschitz_validation_and_training_sets_are_disjoint_and_cover_everything(seed):
    idx = split_indices(60000, 6000, 1000, seed)
    sets = [set(idx[k].tolist()) for k in ("lip", "val", "train")]
    assert [len(s) for s in sets] == [6000, 1000, 53000]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2]) and sets[1].isdisjoint(sets[2])
    assert set.union(*sets) == set(range(60000))


def test_split_is_seeded_and_disjoint():
    x = torch.arange(100, dtype=torch.float32).view(100, 1, 1, 1)
    d = ImageData("toy", x, torch.arange(100), x[:5], torch.arange(5))
    a, b = split_lipschitz(d, 10, 5, seed=3), split_lipschitz(d, 10, 5, seed=3)
    assert torch.equal(a.x_lip, b.x_lip)
    assert set(a.x_lip.flatten().tolist()).isdisjoint(a.x_train.flatten().tolist())
    assert set(a.x_val.flatten().tolist()).isdisjoint(a.x_lip.flatten().tolist() + a.x_train.flatten().tolist())
    with pytest.raises(ValueError):
        split_lipschitz(d, 0)


def test_regression_data_on_the_three_intervals():
    x, y = regression_data(100, noise=0.05, seed=0)
    assert x.shape == y.shape == (100, 1)
    xs = x.squeeze(1)
    inside = ((xs >= -4) & (xs <= -3)) | ((xs >= -0.3) & (xs <= 0.3)) | ((xs >= 3) & (xs <= 4))
    assert inside.all()
    assert (y - regression_target(x)).abs().max() < 0.25
    assert torch.equal(regression_data(seed=0)[1], regression_data(seed=0)[1])
    assert regression_target(torch.tensor([-4.0, 0.0, 3.5])).tolist() == [0.5, 0.0, 0.25]


def test_noisy_pairs_differ():
    a, b = noisy_pairs(torch.zeros(3, 2), 0.1, torch.Generator().manual_seed(0))
    assert not torch.equal(a, b)
    with pytest.raises(ValueError):
        noisy_pairs(torch.zeros(3, 2), 0.0)
