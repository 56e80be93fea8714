"""The input pipeline alone: reslab's in-memory batched pipeline against the usual per-sample
torchvision DataLoader, on CIFAR-size uint8 images."""

from __future__ import annotations

import time

import torch

from reslab.data.memory import MemoryLoader


def time_pipelines(batch_size: int, n: int = 8192, batches: int = 40) -> dict:
    """Images/s of the in-memory batched pipeline vs a torchvision DataLoader with per-sample
    PIL transforms and 2 workers (the usual CIFAR pipeline), on CIFAR-size uint8 images."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)

    class PerSample(Dataset):
        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize((0.5,) * 3, (0.25,) * 3)])

        def __len__(self):
            return n

        def __getitem__(self, i):
            return self.tf(Image.fromarray(images[i])), int(labels[i])

    def rate(loader) -> float:
        it = iter(loader)
        next(it)  # workers started, first batch ready
        t0, seen = time.perf_counter(), 0
        for _ in range(batches):
            x, _ = next(it)
            seen += len(x)
        return seen / (time.perf_counter() - t0)

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    memory = MemoryLoader(x, torch.from_numpy(labels), batch_size, shuffle=True, pad=4,
                          flip=True)
    loader = DataLoader(PerSample(), batch_size, shuffle=True, num_workers=2,
                        persistent_workers=True)
    return {"memory_images_per_s": rate(memory), "dataloader_images_per_s": rate(loader)}
