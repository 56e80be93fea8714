"""Each private or experimental API reslab.compat wraps, checked against the installed library:
an upgrade that removes or renames one fails here, with its name, instead of silently where
it is used."""

from __future__ import annotations

import argparse
import inspect
import pickle

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from reslab import compat


def test_batchnorm_base_covers_every_batchnorm():
    for bn in (torch.nn.BatchNorm1d(2), torch.nn.BatchNorm2d(2), torch.nn.BatchNorm3d(2),
               torch.nn.SyncBatchNorm(2)):
        assert compat.is_batchnorm(bn), bn
    assert not compat.is_batchnorm(torch.nn.LayerNorm(2))
    assert not compat.is_batchnorm(torch.nn.GroupNorm(1, 2))


class Probe(L.LightningModule):
    """Records what Lightning sets and decides while it trains."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.hook_names = set()

    def __setattr__(self, name, value):
        if name == compat.HOOK_NAME_ATTR:
            object.__getattribute__(self, "__dict__").setdefault("hook_names", set()).add(value)
        super().__setattr__(name, value)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 2)), batch_size=1)


def trainer(**kw) -> L.Trainer:
    return L.Trainer(max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", **kw)


def test_lightning_sets_the_hook_name():
    probe = Probe()
    trainer().fit(probe)
    assert "training_step" in probe.hook_names, f"Lightning no longer sets {compat.HOOK_NAME_ATTR}"


def test_lightning_turns_a_keyboard_interrupt_into_exit_1_with_the_interrupt_as_context():
    class Interrupting(Probe):
        def training_step(self, batch, batch_idx):
            raise KeyboardInterrupt

    with pytest.raises(SystemExit) as caught:
        trainer().fit(Interrupting())
    assert caught.value.code == 1 and compat.lightning_keyboard_interrupt(caught.value)


def test_wandb_logger_keeps_init_args_and_an_unstarted_run(tmp_path):
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled", project="p")
    assert compat.wandb_init_args(logger)["project"] == "p"
    assert compat.wandb_run_if_started(logger) is None


def test_wandb_settings_and_the_private_artifact_call():
    import wandb
    from wandb.sdk.wandb_run import Run

    assert compat.wandb_settings(False, save_code=False).x_disable_stats is True
    params = inspect.signature(Run._log_artifact).parameters
    for name in ("aliases", "is_user_created", "use_after_commit"):
        assert name in params, f"wandb {wandb.__version__}: Run._log_artifact lost '{name}'"


def test_ray_init_takes_the_private_local_args(tmp_path):
    import ray

    source = inspect.getsource(ray.init)  # the private keys are popped from **kwargs
    for name in compat.ray_local_init_args(tmp_path):
        assert f'kwargs.pop("{name}"' in source, f"ray {ray.__version__}: ray.init no longer reads {name}"


def test_numpy_arrays_unpickle_from_the_allowed_globals_only():
    class Only(pickle.Unpickler):
        def find_class(self, module, name):
            assert (module, name) in compat.NUMPY_PICKLE_GLOBALS, (module, name)
            return super().find_class(module, name)

    import io

    for array in (np.arange(6, dtype=np.uint8).reshape(2, 3), np.zeros(0, dtype=np.uint8)):
        for protocol in (2, 4):
            got = Only(io.BytesIO(pickle.dumps({b"data": array}, protocol=protocol))).load()
            assert np.array_equal(got[b"data"], array)


def test_argparse_actions_and_paragraph_formatter():
    p = argparse.ArgumentParser(formatter_class=compat.ParagraphFormatter,
                                description="one two three\n\nexamples:\n  a\n  b")
    p.add_argument("--x")
    assert "--x" in [s for a in compat.parser_actions(p) for s in a.option_strings]
    assert "examples:\n  a\n  b" in p.format_help()
