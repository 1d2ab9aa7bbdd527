"""Data: MNIST / Fashion-MNIST as in-memory tensors, the Lipschitz set (Sec. 4.2), the regression samples (Sec. 4.1).

Images are float32 tensors of shape ``[N, 1, 28, 28]`` with values in ``[0, 1]``; labels are int64 ``[N]``.
The data root is ``$CLIPBOOK_DATA`` (default ``~/.cache/clipbook/data``) laid out as torchvision reads it:
``<root>/MNIST/raw/train-images-idx3-ubyte`` etc.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .l2 import gaussian

DATASETS = ("mnist", "fashion")
DATA_ENV = "CLIPBOOK_DATA"
_FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataNotFoundError(FileNotFoundError):
    """The dataset files are missing and could not be downloaded."""


def data_root() -> Path:
    """The data folder: ``$CLIPBOOK_DATA`` or the per-user cache ``~/.cache/clipbook/data``."""
    from .files import user_cache
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else user_cache() / "data"


def _check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    return name


@dataclass
class ImageData:
    """A train/test split in memory. ``x_*``: ``[N, 1, 28, 28]`` float in [0, 1]; ``y_*``: ``[N]`` int64."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _missing_message(name: str, root: Path, reason: str) -> str:
    folder = root / _FOLDERS[name] / "raw"
    return (f"{name} data not found in {folder} ({reason}). Fix: run `python -m clipbook data` (downloads "
            f"MNIST and Fashion-MNIST into {root}; needs network), or set {DATA_ENV} to a folder holding "
            f"{_FOLDERS[name]}/raw/ with the IDX files ({', '.join(_RAW_FILES)})")


def load_images(name: str, root: str | os.PathLike | None = None, download: bool | None = None) -> ImageData:
    """Load MNIST (``"mnist"``) or Fashion-MNIST (``"fashion"``) through ``torchvision.datasets``.

    ``download`` defaults to True only when no ``$CLIPBOOK_DATA`` is set (the per-user cache).
    Raises :class:`DataNotFoundError` naming the folder and the variable when files are missing.
    """
    from torchvision import datasets  # imported lazily: torchvision is slow to import

    _check_dataset(name)
    root = Path(root) if root is not None else data_root()
    if download is None:
        download = not os.environ.get(DATA_ENV)
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..."
        raise DataNotFoundError(_missing_message(name, root, str(err).splitlines()[0])) from err
    except OSError as err:  # download attempted without network
        raise DataNotFoundError(_missing_message(name, root, f"download failed: {err}")) from err

    def to_float(d: torch.Tensor) -> torch.Tensor:
        return d.to(torch.float32).div_(255.0).unsqueeze(1)

    return ImageData(name, to_float(train.data), train.targets.clone(), to_float(test.data), test.targets.clone())


def download(names: tuple[str, ...] | list[str] = DATASETS) -> dict[str, Path]:
    """Fetch the datasets into :func:`data_root` (torchvision's downloader; needs network). Returns the
    folder of each; a dataset already there is only checked."""
    out = {}
    for name in names:
        load_images(name, download=True)
        out[name] = data_root() / _FOLDERS[_check_dataset(name)] / "raw"
    return out


@dataclass
class ClassificationSplit:
    """Three disjoint parts of the training images, and the test set (Sec. 4.2).

    ``x_lip``: the held-out Lipschitz set (CLIP pairs each image with a noisy copy); ``x_val, y_val``: the
    validation images that select the checkpoint, disjoint from X_Lip so that CLIP's regulariser never
    trains on the images that judge it; ``x_train, y_train``: the rest. Images ``[N, 1, 28, 28]``.
    """
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_lip: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device | str) -> "ClassificationSplit":
        """The same split with every tensor on ``device``."""
        return ClassificationSplit(*(getattr(self, f.name).to(device) for f in fields(self)))


def split_indices(n: int, lip_size: int = 6000, val_size: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Disjoint index sets ``lip``, ``val`` and ``train`` covering ``range(n)``, from a seeded permutation."""
    if not 0 < lip_size < n:
        raise ValueError(f"lip_size must be in (0, {n}), got {lip_size}")
    if not 0 <= val_size < n - lip_size:
        raise ValueError(f"val_size must be in [0, {n - lip_size}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return {"lip": perm[:lip_size], "val": perm[lip_size:lip_size + val_size], "train": perm[lip_size + val_size:]}


def split_lipschitz(data: ImageData, lip_size: int = 6000, val_size: int = 1000, seed: int = 0) -> ClassificationSplit:
    """Hold out ``lip_size`` training images as the Lipschitz set and ``val_size`` others for validation
    (disjoint, seeded); the remaining images are the training set."""
    idx = split_indices(len(data.x_train), lip_size, val_size, seed)
    return ClassificationSplit(
        x_train=data.x_train[idx["train"]], y_train=data.y_train[idx["train"]],
        x_lip=data.x_train[idx["lip"]],
        x_val=data.x_train[idx["val"]], y_val=data.y_train[idx["val"]],
        x_test=data.x_test, y_test=data.y_test)


def noisy_pairs(x: torch.Tensor, noise: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(x, x + noise * N(0, 1))``: the paper's "images and their noisy versions". Shapes as ``x``."""
    if noise <= 0:
        raise ValueError(f"noise must be > 0 so that the pairs differ, got {noise}")
    eps = gaussian(x, generator) * noise
    return x.clone(), x + eps


def regression_target(x: torch.Tensor) -> torch.Tensor:
    """The ground truth of Sec. 4.1: ``f(x) = 0.5 * max(|x| - 3, 0)``."""
    return 0.5 * torch.clamp(x.abs() - 3.0, min=0.0)


REGRESSION_INTERVALS = ((-4.0, -3.0), (-0.3, 0.3), (3.0, 4.0))


def regression_data(n: int = 100, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy samples of :func:`regression_target` on [-4,-3] ∪ [-0.3,0.3] ∪ [3,4].

    Returns ``x, y`` of shape ``[n, 1]``; ``x`` uniform on the union (each interval weighted by its length),
    ``y = f(x) + noise * N(0, 1)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([b - a for a, b in REGRESSION_INTERVALS])
    which = torch.multinomial(lengths / lengths.sum(), n, replacement=True, generator=g)
    lo = torch.tensor([a for a, _ in REGRESSION_INTERVALS])[which]
    u = torch.rand(n, generator=g)
    x = lo + u * lengths[which]
    x, _ = torch.sort(x)
    y = regression_target(x) + noise * torch.randn(n, generator=g)
    return x.unsqueeze(1), y.unsqueeze(1)


def two_moons(n: int = 400, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-moons toy problem: ``x`` ``[n, 2]`` float, ``y`` ``[n]`` int64 in {0, 1}, seeded."""
    import math
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    t = torch.rand(n, generator=g) * math.pi
    x = torch.stack([torch.cos(t), torch.sin(t)], 1)
    x[y == 1] = torch.stack([1 - torch.cos(t[y == 1]), 0.5 - torch.sin(t[y == 1])], 1)
    x = x + noise * torch.randn(x.shape, generator=g)
    return x, y


def toy_split(n: int = 400, n_lip: int = 200, noise: float = 0.1, seed: int = 0) -> ClassificationSplit:
    """Two moons as a :class:`ClassificationSplit`: ``n`` training points, ``n_lip`` held-out points for X_Lip
    (also the validation set) and ``n`` test points."""
    x, y = two_moons(n + n_lip, noise, seed)
    xt, yt = two_moons(n, noise, seed + 1)
    return ClassificationSplit(x[:n], y[:n], x[n:], x[n:], y[n:], xt, yt)
