"""CIFAR-10/100 in torchvision's on-disk format (the "python version" pickled batches).

The batches are read with a restricted unpickler that only rebuilds numpy arrays, so a file in
`data.root` cannot run code when loaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from reslab.compat import NUMPY_PICKLE_GLOBALS
from reslab.data.base import ArrayData
from reslab.errors import DataError, reason


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArraysOnly(f, encoding="bytes").load()
        if not isinstance(d, dict):
            raise TypeError(f"it holds a {type(d).__name__}, not a dict")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except KeyError as e:
        raise DataError(f"{path} is not a CIFAR batch file (no {e.args[0]!r} entry)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            OverflowError, MemoryError, OSError) as e:
        raise DataError(f"{path} is not a CIFAR batch file ({reason(e)})") from None
    if labels.ndim != 1 or len(data) != len(labels):
        raise DataError(f"{path} holds {len(data)} images but labels of shape "
                        f"{list(labels.shape)}; a CIFAR batch has one label per image")
    return data, labels


class CIFAR10Data(ArrayData):
    in_channels, num_classes, input_size = 3, 10, (3, 32, 32)
    pad, flip = 4, True  # §4.2: 4-pixel padding, random 32x32 crop, horizontal flip
    folder, train_files, test_files, label_key = (
        "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels")
    tv_name = "CIFAR10"

    @property
    def dir(self) -> Path:
        return Path(self.cfg.root) / self.folder

    def check(self) -> None:
        missing = [f for f in self.train_files + self.test_files if not (self.dir / f).is_file()]
        if missing and self.cfg.download:
            self._download()
            missing = [f for f in self.train_files + self.test_files
                       if not (self.dir / f).is_file()]
        if missing:
            raise DataError(
                f"{self.tv_name} not found: expected {', '.join(missing)} in {self.dir} "
                f"(set data.root to the folder that holds '{self.folder}', or data.download=true "
                f"to fetch it)")

    def _download(self) -> None:
        import torchvision

        try:
            getattr(torchvision.datasets, self.tv_name)(self.cfg.root, download=True)
        except Exception as e:  # noqa: BLE001 - no network, a proxy, a full disk: one sentence
            raise DataError(f"could not download {self.tv_name} into {self.cfg.root} "
                            f"({type(e).__name__}: {str(e)[:120]}); without internet, copy "
                            f"'{self.folder}' there") from None

    def load(self):
        self.check()
        train = [read_batch(self.dir / f, self.label_key) for f in self.train_files]
        test = [read_batch(self.dir / f, self.label_key) for f in self.test_files]

        def tensors(parts):
            x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255)
            return x, torch.from_numpy(np.concatenate([p[1] for p in parts]))

        return *tensors(train), *tensors(test)


class CIFAR100Data(CIFAR10Data):
    num_classes = 100
    folder, train_files, test_files, label_key = (
        "cifar-100-python", ["train"], ["test"], b"fine_labels")
    tv_name = "CIFAR100"
