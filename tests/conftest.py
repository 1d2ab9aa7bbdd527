import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_split():
    """The real MNIST data from $CLIPBOOK_DATA (CI sets it to ../shared/data)."""
    from clipbook.core.data import DATA_ENV, load_images, split_lipschitz
    if DATA_ENV not in os.environ:
        pytest.skip(f"{DATA_ENV} is not set: the MNIST tests need the data folder")
    return split_lipschitz(load_images("mnist"))


@pytest.fixture(scope="session")
def trained_mlp(mnist_split):
    """A quickly trained MNIST MLP (5 epochs of standard training on 20,000 images)."""
    from dataclasses import replace

    from clipbook.core.models import build_model
    from clipbook.core.tasks import ClassificationTask
    from clipbook.core.training import TrainConfig, train
    sp = replace(mnist_split, x_train=mnist_split.x_train[:20000], y_train=mnist_split.y_train[:20000])
    model = build_model("mnist_mlp", seed=0)
    train(model, ClassificationTask(sp), TrainConfig(method="standard", epochs=5, eval_lip_steps=0))
    return model


def pytest_report_header(config):
    """Say at the top of every run whether the tests that need MNIST can run (they skip without the data)."""
    from clipbook.core.data import DATA_ENV
    if DATA_ENV in os.environ:
        return f"clipbook: {DATA_ENV}={os.environ[DATA_ENV]}"
    return (f"clipbook: {DATA_ENV} is NOT set: every test that needs MNIST will be SKIPPED. Set it to the folder "
            f"holding MNIST/raw (or run `python -m clipbook data`), see the README.")
