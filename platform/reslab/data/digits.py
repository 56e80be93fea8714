"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images): the embedded default, so
every recipe has real data with no download."""

from __future__ import annotations

import torch

from reslab.data.base import ArrayData


class DigitsData(ArrayData):
    in_channels, num_classes, input_size = 1, 10, (1, 8, 8)
    pad, flip = 1, False  # shifts by one pixel; mirrored digits are different digits
    test_fraction = 0.2

    def load(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(d.target, dtype=torch.int64)
        # A fixed test split (the set has none of its own), independent of the run's seed.
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
        n_test = int(len(x) * self.test_fraction)
        test, train = perm[:n_test].sort().values, perm[n_test:].sort().values
        return x[train], y[train], x[test], y[test]
