"""Bad input, tried as a stranger would: each case must exit 2 with one sentence on stderr (no
traceback) and create or change no file (sha256 of every file, a completed run's records
included, before and after). Cases are argv templates: {T} is the scratch folder, {ROOT} the
`run.root=` override that points into it, {RUN} a completed run directory, {RUN_ID} its name
and {CKPT} its best.ckpt; ENV_CASES also set environment variables. Run as a test, or as a
script for the count:

    .venv/bin/python tests/test_bad_input.py
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ondisk import IMAGEFOLDER_ARGS, SR_ARGS, write_bad_data  # noqa: E402
from reslab.config.load import load  # noqa: E402
from reslab.run import train  # noqa: E402
from support import ROOT, TINY, run_main  # noqa: E402

FILES = {
    "binary.yaml": b"\xff\xfe\x00\x01",
    "nested.yaml": ("a: " + "[" * 3000 + "]" * 3000 + "\n").encode(),
    "duplicate.yaml": b"seed: 1\nseed: 2\n",
    "list.yaml": b"- 1\n- 2\n",
    "tags.yaml": b"model: !!python/object/apply:os.system ['touch pwned']\n",
    "alias.yaml": b"a: &x [1, 2]\nb: *x\n",
    "secret.yaml": b"logger:\n  wandb:\n    tags: ['${oc.env:HOME}']\n",
    "a_file": b"x",
    "spec_space.yaml": b"space: 3\n",
    "spec_base.yaml": b"base: 5\n",
    "spec_scheduler.yaml": b"scheduler: asha\n",
    "spec_resources.yaml": b"resources_per_trial: 2\n",
    "spec_empty.yaml": b"space:\n  model.depth: []\n",
    "spec_seeds.yaml": b"seeds: [0, 0]\n",
    "spec_key.yaml": b"nmae: x\n",
    "spec_samples.yaml": b"num_samples: lots\n",
    # Sweep spec values outside their domains (each spec_* file is a `sweep --dry-run` case).
    "spec_v_space_list.yaml": b"space: [1, 2]\n",
    "spec_v_space_null.yaml": b"space: null\n",
    "spec_v_space_int_key.yaml": b"space:\n  1: [2]\n",
    "spec_v_space_null_key.yaml": b"space: {null: [2]}\n",
    "spec_v_space_zero_key.yaml": b"space: {0: [2]}\n",
    "spec_v_yaml11.yaml": b"%YAML 1.1\n---\nseeds: [017]\n",
    "spec_v_two_dists.yaml": b"space:\n  optim.lr: {uniform: [0, 1], choice: [1]}\n",
    "spec_v_seeds0.yaml": b"seeds: 0\n",
    "spec_v_seeds_neg.yaml": b"seeds: -3\n",
    "spec_v_seeds_bool.yaml": b"seeds: true\n",
    "spec_v_seeds_float.yaml": b"seeds: [0.5]\n",
    "spec_v_seeds_huge.yaml": b"seeds: [99999999999999999999]\n",
    "spec_v_seeds_nan.yaml": b"seeds: .nan\n",
    "spec_v_samples0.yaml": b"search: random\nnum_samples: 0\nspace:\n"
                            b"  optim.lr: {loguniform: [0.01, 0.1]}\n",
    "spec_v_failures.yaml": b"max_failures: -7\n",
    "spec_v_concurrent.yaml": b"max_concurrent: -3\n",
    "spec_v_gpu_nan.yaml": b"resources_per_trial: {gpu: .nan}\n",
    "spec_v_gpu_two.yaml": b"resources_per_trial: {gpu: 2}\n",
    "spec_v_cpu_nan.yaml": b"resources_per_trial: {cpu: .nan}\n",
    "spec_v_cpu_inf.yaml": b"resources_per_trial: {cpu: .inf}\n",
    "spec_v_cpu_more.yaml": b"resources_per_trial: {cpu: 4000}\n",
    "spec_v_grace.yaml": b"scheduler: {name: asha, grace_period: -1}\n",
    "spec_v_grace_big.yaml": b"scheduler: {name: asha, grace_period: 1000}\n",
    "spec_v_factor.yaml": b"scheduler: {name: asha, reduction_factor: 0.5}\n",
    "spec_v_metric.yaml": b"metric: val/nope\n",
    "spec_v_metric_test.yaml": b"metric: test/err\n",
    "spec_v_mode.yaml": b"mode: max\n",
    "spec_v_choice.yaml": b"search: random\nspace:\n  model.depth: {choice: [57, 58]}\n",
    "spec_v_uniform.yaml": b"search: random\nspace:\n  optim.lr: {uniform: [-1, -0.5]}\n",
    "spec_v_loguniform.yaml": b"search: random\nspace:\n  optim.lr: {loguniform: [-1, 1]}\n",
    "spec_v_randint.yaml": b"search: random\nspace:\n  data.batch_size: {randint: [-5, 0]}\n",
    "spec_v_int_uniform.yaml": b"search: random\nspace:\n  data.batch_size: {uniform: [8, 64]}\n",
    "spec_v_slash.yaml": b"space:\n  data.root: [a/b, c]\n",
    "spec_v_up.yaml": b"search: random\nspace:\n  data.root: {choice: [ok, ../up]}\n",
    "spec_v_newline.yaml": b"space:\n  data.root: [\"a\\nb\"]\n",
    "spec_v_name.yaml": b"name: ../x\n",
    "spec_v_run_name.yaml": b"space:\n  run.name: [a, b]\n",
    "spec_v_seed_key.yaml": b"space:\n  seed: [1, 2]\n",
    "spec_v_random_nothing.yaml": b"search: random\n",
    "spec_v_axis.yaml": b"space:\n  optim.lr: [" + b", ".join(b"0.%04d" % i for i in range(1, 1002)) + b"]\n",
    "spec_v_trials.yaml": b"space:\n  optim.lr: [" + b", ".join(b"0.%02d" % i for i in range(1, 41))
                          + b"]\n  data.batch_size: [" + b", ".join(b"%d" % i for i in range(1, 31)) + b"]\n",
    "spec_v_cpu_tiny.yaml": b"resources_per_trial: {cpu: 0.00001}\n",
    "spec_v_near.yaml": b"space:\n  optim.lr: [0.10001, 0.10002]\n",
    "spec_v_null.yaml": b"space:\n  model.weights: [null]\n",
    "spec_v_seed_override.yaml": b"base:\n  overrides: [seed=3]\n",
    "spec_v_randint_depth.yaml": b"search: random\nnum_samples: 5\nspace:\n"
                                 b"  model.depth: {randint: [8, 27]}\n",
    "complex_key.yaml": b"? [a, b]\n: 1\n",
    "date.yaml": b"seed: 2020-01-01\n",
    "octal.yaml": b"trainer:\n  max_epochs: 0b101\n",
    "sexagesimal.yaml": b"trainer:\n  max_epochs: 1:50\n",
    # Explicit tags: YAML 1.1's readings, and types no config value has.
    "tag_timestamp.yaml": b"seed: !!timestamp 2020-01-01\n",
    "tag_bool.yaml": b"run:\n  test: !!bool yes\n",
    "tag_int.yaml": b"seed: !!int 1_0\n",
    "tag_float.yaml": b"optim:\n  lr: !!float 1_0.5\n",
    "tag_set.yaml": b"data: !!set {x, y}\n",
    "tag_binary.yaml": b"run:\n  name: !!binary aGk=\n",
    "tag_omap.yaml": b"optim: !!omap [{lr: 1}]\n",
    "huge_int.yaml": b"seed: " + b"9" * 5001 + b"\n",
    "huge_tagged_int.yaml": b"seed: !!int 0x" + b"f" * 5001 + b"\n",
}


TRAIN = [["train", *TINY, "{ROOT}", *c] for c in (
    ["seed=-1"], ["seed=99999999999"], ["run.name=" + "x" * 300], ["run.name=a\u200bb"],
    ["run.name=a\u0085b"], ["run.name=../up"], ["run.name=/etc"], ["run.name=.."],
    ["model.depth=[1]"], ["model.depth=57"], ["model.depth=abc"], ["model.dpeth=56"],
    ["model.shortcut=D"], ["model.name=resnet65"], ["model.name="], ["model=resnet56"],
    ["model.depth.x=3"], ["model.name=resnet50", "model.depth=34"], ["model.width=-1"],
    ["model.preact=maybe"], ["optim.momentum=-1"], ["optim.label_smoothing=2"],
    ["optim.lr=0"], ["optim.schedule=step"], ["optim.warmup_steps=-3"], ["data.name=cifar11"],
    ["data.batch_size=0"], ["data.batch_size=abc"], ["data.val_size=-1"], ["data.val_size=0"],
    ["data.val_size=5000"], ["data.classes=[0, 0]"], ["data.classes=[-1]"],
    ["data.classes=[3, 11]"], ["data.num_workers=-1"], ["data.image_size=0"],
    ["trainer.max_epochs=0"], ["trainer.max_steps=0"], ["trainer.max_steps=-5"],
    ["trainer.devices=-1"], ["trainer.precision=64"], ["trainer.accelerator=tpu"],
    ["trainer.precision=16-mixed"], ["trainer.precision=16-mixed", "trainer.accelerator=auto"],
    ["trainer.gradient_clip_val=-1"], ["trainer.limit_train_batches=0"],
    ["trainer.checkpoint_every_n_steps=-1"], ["slurm.max_restarts=-1"],
    ["slurm.signal_margin_s=-5"], ["diagnostics.every_n_steps=-1"],
    ["logger.wandb.mode=loud"], ["=3"], ["depth"], ["run.name=${oc.env:HOME}"],
    ["data.name=cifar10", "data.root={T}/a_file"], ["data.name=imagefolder", "data.root={T}"],
    ["data.name=imagefolder", "data.root={T}/empty_classes"],
    ["data.name=imagefolder", "data.root={T}/one_class"],
    ["model.weights=/etc/passwd"], ["model.weights=https://example.com/evil.ckpt"],
    ["model.freeze=layer9"], ["configs/experiment/sr_vdsr_sample.yaml", "data.name=digits"],
    ["configs/experiment/sr_vdsr_sample.yaml", "data.patch_size=400"],
    ["configs/nope.yaml"], ["{T}/binary.yaml"], ["{T}/nested.yaml"],
    ["{T}/duplicate.yaml"], ["{T}/list.yaml"], ["{T}/tags.yaml"], ["{T}/alias.yaml"],
    ["{T}/secret.yaml"], ["{T}"], ["run.root={T}/a_file"],
    *[[f"{{T}}/{name}"] for name in FILES if name.startswith(("tag_", "huge_"))])]

OTHER = [
    ["train", "--resume", ""], ["train", "--resume", " "], ["test", ""],
    ["train", "--resume", "{T}/nope"], ["train", "--resume", "{T}/a_file"],
    ["train", "--resume", "{T}", "configs/quickstart.yaml"], ["test", "{T}/nope"],
    ["test", "{T}/a_file"], ["models", "zzz*"], ["config", "model.depth=abc"],
    ["status", "{T}/nope"], ["status", "--root", "{T}/nope"], ["compare", "{T}/nope"],
    ["compare", "{T}/empty_classes"], ["bench", "--steps", "0"], ["bench", "--rounds", "0"],
    ["bench", "--steps", "x"], ["sweep", "{T}/nope.yaml"],
    ["sweep", "sweeps/degradation_digits.yaml", "--cpus", "-1", "--dry-run"],
    ["submit", "configs/slurm/local.yaml", "slurm.nodes=0", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "seed=", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "slurm.nodes=1,2", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "run.name=x$(reboot)", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "trainer.num_nodes=3", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "seed=1,2,1", "--dry-run", "{ROOT}"],
    ["bench", "--threads", "100000"], ["bench", "--steps", "100001"], ["bench", "--rounds", "1001"],
    ["bench", "--warmup", "99999999999999999999"], ["bench", "trainer.devices=2"],
    ["bench", "trainer.num_nodes=2"],
    ["trian"], ["train", "--nope"], ["train", "--resume", "configs"],
    ["test", "configs/quickstart.yaml"], ["compare", "configs"],
    ["config", "configs/quickstart.yaml", "model.name=plain20", "model.shortcut=A"],
    ["config", "configs/quickstart.yaml", "model.depth=164"],
    ["config", ""], ["config", "{T}/complex_key.yaml"], ["config", "{T}/date.yaml"],
    ["config", "{T}/octal.yaml"], ["config", "{T}/sexagesimal.yaml"], ["config", "seed=2020-01-01"],
    ["config", "trainer.max_epochs=1_0"], ["config", "optim.lr=1_0.0_1"],
    ["status", "--root", ""], ["compare", "{RUN}", "--out", "-"], ["compare", "{RUN}", "--by", ""],
    ["compare", "{RUN}", "--metric", ""], ["compare", "{RUN}", "--metric", "params"],
    ["compare", "{RUN}", "--by", "model.depth,"],
    ["sweep", "sweeps/degradation_digits.yaml", "--address", "", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "--address", "foo:bar", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "--address", "127.0.0.1:1", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "seed=3", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "run.name=x", "--dry-run", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "trainer.devices=2", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "model.shortcut=B", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--sweep", "sweeps/degradation_digits.yaml",
     "model.depth=32", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "seed=00,0", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "seed=0,,1", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "seed=0", "--array", "seed=1", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--sweep", "", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--sweep", "degradation_digits", "--array", "seed=1",
     "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "slurm.extra=[--no-requeue]", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "slurm.extra=['-o /tmp/x']", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "trainer.accelerator=gpu", "--dry-run", "{ROOT}"],
    ["submit", "configs/slurm/local.yaml", "--array", "trainer.accelerator=cpu,gpu", "--dry-run",
     "{ROOT}"],
    *[["submit", "configs/slurm/local.yaml", f"slurm.extra=['{option}']", "--dry-run", "{ROOT}"]
      for option in ("--out={T}/stolen_%j.log", "--no-req", "--parti=debug", "--gres=gpu:4",
                     "--sig=USR2@10", "--gpus-per-task=3")],  # sbatch reads a start as the option
    ["submit", "configs/slurm/local.yaml", "--array",
     "seed=" + ",".join(map(str, range(2001))), "--dry-run", "{ROOT}"],
]

# Values outside a config key's domain (the schema declares each one beside its field).
CONFIG_CASES = [["train", *TINY, "{ROOT}", *c] for c in (
    ["data.val_size=nan"], ["data.val_size=inf"], ["data.val_size=2.5"], ["model.width=nan"],
    ["model.width=inf"], ["model.width=1e6"], ["data.split_seed=99999999999999999999999"],
    ["trainer.limit_train_batches=1.5"], ["trainer.limit_train_batches=nan"],
    ["trainer.gradient_clip_val=nan"], ["data.std=[0,0,0]"], ["data.num_classes=0"],
    ["data.num_classes=1"], ["data.shape=[0,8,8]"], ["data.shape=[3]"], ["data.classes=[3]"],
    ["optim.weight_decay=nan"], ["optim.gamma=nan"], ["model.res_scale=nan"],
    ["model.depth=" + "[" * 3000], ["optim.warmup_lr=-1"], ["optim.backbone_lr_mult=-1"],
    ["optim.milestones=[-5,-1]"], ["optim.milestones=[5,3]"], ["optim.warmup_until_err=nan"],
    ["model.depth=999999998"], ["data.shape.0=5"], ["seed=1.5"], ["seed=true"], ["seed=nan"],
    ["model.preact=3"], ["model.preact=null"], ["model.zero_init_residual=0.5"],
    ["optim.lr=nan"], ["optim.lr=inf"], ["optim.lr=-inf"], ["optim.lr=1e30"], ["optim.lr=true"],
    ["optim.momentum=nan"], ["optim.momentum=1"], ["optim.gamma=0"], ["optim.gamma=2"],
    ["optim.weight_decay=-1"], ["optim.weight_decay=1e9"], ["optim.label_smoothing=nan"],
    ["optim.warmup_steps=1e30"], ["optim.milestones=[[1]]"], ["optim.milestones={a: 1}"],
    ["optim.milestones=abc"], ["data.batch_size=1e30"], ["data.batch_size=1.5"],
    ["data.batch_size=nan"], ["data.batch_size=[128]"], ["data.num_workers=1e9"],
    ["data.image_size=nan"], ["data.size=0"], ["data.scale=5"], ["data.patch_size=-48"],
    ["data.mean=[nan,0,0]"], ["data.mean=[1,2,3,4]"], ["data.std=[inf]"], ["data.std=[]"],
    ["data.classes=[]"], ["data.classes=[a,b]"], ["data.classes=[0.5,1]"],
    ["data.resize_size=0"], ["data.root="], ["data.root=a\x00b"], ["model.weights="],
    ["model.depth=-1"], ["model.depth=0"], ["model.depth=nan"], ["model.depth=1e30"],
    ["model.depth={a: 1}"], ["model.width=0"], ["model.width=-inf"], ["model.width=[1]"],
    ["model.res_scale=0"], ["model.res_scale=inf"], ["model.name=a/b"], ["model.name=.."],
    ["model={a: 1}"], ["trainer={max_epochs: 0}"], ["trainer.max_epochs=nan"],
    ["trainer.max_epochs=1e30"], ["trainer.max_epochs=-1"], ["trainer.max_epochs=1.5"],
    ["trainer.max_steps=nan"], ["trainer.max_steps=1e30"], ["trainer.devices=0"],
    ["trainer.devices=1e9"], ["trainer.num_nodes=0"], ["trainer.num_nodes=nan"],
    ["trainer.log_every_n_steps=0"], ["trainer.check_val_every_n_epoch=0"],
    ["trainer.gradient_clip_val=inf"], ["trainer.gradient_clip_val=0"],
    ["trainer.limit_train_batches=-0.5"], ["trainer.limit_train_batches=inf"],
    ["trainer.checkpoint_every_n_steps=nan"], ["trainer.channels_last=maybe"],
    ["trainer.compile=2"], ["trainer.precision=bf16"], ["trainer.precision=[1]"],
    ["trainer.deterministic=yes please"], ["trainer.progress_bar=2"],
    ["run.name="], ["run.name=a\tb"], ["run.name=a\x00b"], ["run.name=\u202eevil"],
    ["run.root="], ["run.test=3"], ["logger.wandb.tags=x"], ["logger.wandb.tags=['']"],
    ["logger.wandb.tags=['" + "t" * 65 + "']"], ["logger.wandb.tags=[[a]]"],
    ["logger.wandb.log_model=some"], ["logger.wandb.project=a/b"], ["logger.wandb.mode=1"],
    ["logger.wandb.name=a\nb"], ["slurm.time=1h"], ["slurm.time=$(reboot)"],
    ["slurm.partition=a b"], ["slurm.partition=a;reboot"], ["slurm.mem=lots"],
    ["slurm.nodes=nan"], ["slurm.gpus_per_node=-1"], ["slurm.gpus_per_node=1e9"],
    ["slurm.cpus_per_task=0"], ["slurm.setup=ls"], ["slurm.setup=['a\x07b']"],
    ["slurm.extra=[[1]]"], ["slurm.signal_margin_s=nan"], ["slurm.max_restarts=1e30"],
    ["diagnostics.every_n_steps=nan"], ["diagnostics.every_n_steps=1e30"])]

# Runs and their records: resume, test, export, status, compare, output paths.
RUN_CASES = [
    *[["train", "--resume", "{RUN}", *c] for c in (
        ["trainer.max_epochs=1"], ["trainer.max_steps=3"], ["optim.name=adamw"],
        ["optim.momentum=0.5"], ["optim.schedule=paper"], ["optim.weight_decay=0"],
        ["model.freeze=stem"], ["model.depth=14"], ["model.shortcut=none"],
        ["model.weights={RUN}"], ["data.name=synthetic"], ["data.val_size=0.3"],
        ["data.split_seed=4"], ["data.classes=[0,1]"], ["data.batch_size=32"],
        ["data.augment=false"], ["data.normalize=none"], ["data.root={T}"], ["seed=7"],
        ["run.name=moved"], ["run.root={T}/elsewhere"], ["trainer.max_epochs=1", "optim.lr=0.01"],
        ["trainer.precision=bf16-mixed"], ["trainer.gradient_clip_val=1"],
        ["trainer.limit_train_batches=2"])],
    # A new run or sweep inside a run's records.
    ["train", *TINY, "run.root={RUN}"], ["train", *TINY, "run.root={RUN}/checkpoints"],
    ["train", *TINY, "run.root={RUN}/..", "run.name={RUN_ID}"],
    ["sweep", "sweeps/degradation_digits.yaml", "run.root={RUN}"],
    ["sweep", "sweeps/degradation_digits.yaml", "--dry-run", "run.root={RUN}/slurm"],
    # A folder that loops back on itself.
    ["train", *TINY, "run.root={T}/loop"], ["train", *TINY, "run.root={T}/loop/deeper"],
    ["sweep", "sweeps/degradation_digits.yaml", "--dry-run", "run.root={T}/loop"],
    ["submit", "configs/slurm/local.yaml", "--dry-run", "run.root={T}/loop"],
    ["train", "--resume", "{CKPT}", "trainer.max_epochs=1"],
    *[["export", "{RUN}", "--format", "state_dict", "--out", *c] for c in (
        ["{CKPT}", "--force"], ["{RUN}/config.yaml", "--force"], ["{RUN}/summary.json"],
        ["{RUN}/checkpoints", "--force"], ["{RUN}", "--force"], ["/dev/null", "--force"],
        ["/proc/reslab-bad-input/m.pt"], ["{T}/a_file"], ["{T}/a_file/m.pt"], ["a\0b.pt"],
        ["{T}"], ["{T}/"],  # a folder that is not empty, without --force
        ["{T}/sweep/trial/export/m.pt"], ["{RUN}/compare/m.pt"])],  # another run's, compare's
    *[["compare", "{RUN}", "--out", *c] for c in (
        ["{RUN}/checkpoints", "--force"], ["{RUN}", "--force"], ["{T}"], ["{T}/a_file"],
        ["/proc/reslab-bad-input"], ["/dev/null", "--force"], ["{RUN}/export/c"])],
    *[["test", "{RUN}", *c] for c in (
        ["model.depth=14"], ["model.shortcut=none"], ["data.name=synthetic"],
        ["data.classes=[0,1]"], ["data.val_size=0.3"], ["optim.lr=1"], ["seed=2"],
        ["trainer.max_epochs=3"], ["run.name=x"])],
    ["test", "{CKPT}", "data.normalize=none"],
    # A trial of a sweep resumed alone (the sweep's resume keeps its trials the same experiment).
    ["train", "--resume", "{T}/sweep/trial"], ["train", "--resume", "{T}/sweep/trial",
                                              "trainer.max_epochs=3"],
    # What is not a run directory, said as what it is.
    *[[cmd, *c] for cmd in ("test", "export") for c in (
        ["{T}/nope"], ["{T}/a_fifo"], ["{RUN}/config.yaml"], ["{T}/loop"])],
    ["export", "{RUN}", "--out", "-"], ["export", "{RUN}", "--out", ""],
    ["compare", "{RUN}", "--out", " "], ["compare"],
]

# Data that cannot train: too small, corrupt, unreadable.
DATA_CASES = [["train", *TINY, "{ROOT}", *c] for c in (
    *[[*IMAGEFOLDER_ARGS, f"data.root={{T}}/data/{name}"] for name in (
        "if_garbage_train", "if_garbage_val", "if_trunc_train", "if_trunc_val", "if_png",
        "if_fifo", "if_empty_class")],
    [*IMAGEFOLDER_ARGS, "data.root={T}/data/if_ok", "data.classes=[1,5]"],
    [*IMAGEFOLDER_ARGS, "data.root={T}/data/if_ok", "data.std=[0.2,0.2]"],
    [*IMAGEFOLDER_ARGS, "data.root={T}/data/if_ok", "data.mean=[0.5,0.5]"],
    [*IMAGEFOLDER_ARGS, "data.root={T}/data/if_two", "trainer.devices=2"],
    *[[*SR_ARGS, f"data.root={{T}}/data/{name}"] for name in (
        "sr_garbage_train", "sr_garbage_val", "sr_trunc_train", "sr_1px_train", "sr_15px_train",
        "sr_3px_val", "sr_1px_val", "sr_fifo")],
    *[[*SR_ARGS, "data.root={T}/data/sr_ok", f"data.test_root={{T}}/data/{name}"]
      for name in ("bm_garbage", "bm_1px", "bm_9px")],
    [*SR_ARGS, "data.root={T}/data/sr_ok", "data.size=1"],
    [*SR_ARGS[:3], "data.name=photos", "data.classes=[0,1]"],
    *[["data.name=cifar10", f"data.root={{T}}/data/{name}", "data.val_size=5"] for name in (
        "cifar_garbage", "cifar_trunc", "cifar_empty_file", "cifar_list", "cifar_no_data",
        "cifar_nested_labels", "cifar_count", "cifar_no_test")],
    ["trainer.limit_train_batches=0.001"], ["data.val_size=0.999"], ["data.val_size=1437"],
    ["data.val_size=1438"], ["data.val_size=0.0001"], ["data.classes=[3,5]", "data.val_size=0.001"],
    ["model.name=resnet18", "model.depth=null", "data.name=synthetic", "data.size=64",
     "data.batch_size=1"],
    ["data.name=synthetic", "data.size=1000000", "data.shape=[3,4096,4096]"],
    *[[f"model.weights={{T}}/data/{name}"] for name in (
        "w_list.pt", "w_tensor.pt", "w_epoch.pt", "w_state_list.pt", "w_entry_int.pt",
        "w_foreign.pt", "w_ak_two.th", "w_ak_narrow.th")],
    ["model.weights={RUN}", "model.depth=14"], ["model.weights={CKPT}", "model.depth=14"],
    ["model.weights={T}/data"])]

# Sweep specs that cannot run as written.
SWEEP_CASES = [
    # Real runs (no --dry-run): refused before Ray starts, nothing written.
    ["sweep", "{T}/spec_v_seeds0.yaml", "{ROOT}"], ["sweep", "{T}/spec_v_samples0.yaml", "{ROOT}"],
    ["sweep", "{T}/spec_v_slash.yaml", "{ROOT}"], ["sweep", "{T}/spec_v_cpu_more.yaml", "{ROOT}"],
    ["sweep", "{T}/spec_v_metric.yaml", "{ROOT}"], ["sweep", "{T}/spec_v_space_list.yaml", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "--resume", "{ROOT}"],
    ["sweep", "sweeps/depth_shortcut.yaml", "--cpus", "1", "{ROOT}"],
    ["sweep", "{T}/spec_v_cpu_tiny.yaml", "{ROOT}"], ["sweep", "{T}/spec_v_near.yaml", "{ROOT}"],
    ["sweep", "{T}/spec_v_null.yaml", "{ROOT}"], ["sweep", "{T}/spec_v_seed_override.yaml", "{ROOT}"],
    ["sweep", "{T}/spec_v_randint_depth.yaml", "{ROOT}"],
    ["sweep", "{T}/spec_v_randint_depth.yaml", "--dry-run", "{ROOT}"],
    # Shipped specs with overrides that make them impossible.
    ["sweep", "sweeps/degradation_digits.yaml", "model.depth=57", "--dry-run", "{ROOT}"],
    ["sweep", "sweeps/lr_wd_asha.yaml", "trainer.max_epochs=2", "--dry-run", "{ROOT}"],
    ["sweep", "sweeps/sr_residual.yaml", "data.name=digits", "--dry-run", "{ROOT}"],
    ["sweep", "sweeps/depth_shortcut.yaml", "--cpus", "1", "--dry-run", "{ROOT}"],
    # What `train` refuses on this machine (no GPU), a trial with resources gpu 0 refuses too.
    ["sweep", "sweeps/degradation_digits.yaml", "trainer.accelerator=gpu", "--dry-run", "{ROOT}"],
    ["sweep", "sweeps/degradation_digits.yaml", "trainer.precision=16-mixed", "{ROOT}"],
]


# Copies of the completed run with one record replaced (made by `craft`): what a run directory
# names is read only inside it, and never waited on.
CRAFTED = {
    "summary_fifo": lambda run, t: fifo(run / "summary.json"),
    "metrics_fifo": lambda run, t: fifo(run / "metrics.csv"),
    "config_fifo_link": lambda run, t: link(run / "config.yaml", t / "a_fifo"),
    "summary_out": lambda run, t: link(run / "summary.json", t / "a_file"),
    "config_out": lambda run, t: link(run / "config.yaml", t / "done_config.yaml"),
    "metrics_out": lambda run, t: link(run / "metrics.csv", "/etc/passwd"),
    "summary_folder": lambda run, t: folder(run / "summary.json"),
    "best_fifo": lambda run, t: fifo(run / "checkpoints" / "best.ckpt"),
    # a resume read these after it had begun the attempt: a traceback, the run left `running`
    "metrics_row": lambda run, t: append(run / "metrics.csv", "oops,1\n"),
    "metrics_wide": lambda run, t: append(run / "metrics.csv", "5,1" + ",0" * 40 + "\n"),
}
# Which commands read what each damages (a resume starts from last.ckpt, so a damaged best.ckpt
# does not stop it; test and export do not read metrics.csv).
READ_BY = {"best_fifo": ("test", "export"), "metrics_row": ("train",), "metrics_wide": ("train",)}
CRAFTED_CASES = [[*cmd, f"{{T}}/crafted/{name}"] for name in CRAFTED for cmd in (
    ["test"], ["export", "--format", "state_dict", "--out", "{T}/m.pt"], ["train", "--resume"])
    if cmd[0] in READ_BY.get(name, (cmd[0],))]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def link(path: Path, target: Path | str) -> None:
    path.unlink()
    path.symlink_to(target)


def craft(t: Path, run: Path) -> None:
    (t / "done_config.yaml").write_bytes((run / "config.yaml").read_bytes())
    shutil.copytree(run, t / "sweep" / "trial")  # a trial of a sweep
    (t / "sweep" / "sweep.yaml").write_text("name: sweep\n")
    os.mkfifo(t / "a_fifo")
    for name, damage in CRAFTED.items():
        copy = t / "crafted" / name
        shutil.copytree(run, copy, symlinks=True)
        damage(copy, t)


# The process's environment: a variable a library would refuse or choke on, after the run
# directory was made.
ENV_CASES = [
    ({"WANDB_MODE": "garbage"}, ["train", *TINY, "{ROOT}"]),
    ({"WANDB_MODE": "garbage"}, ["test", "{RUN}"]),
    ({"WANDB_MODE": ""}, ["train", *TINY, "{ROOT}"]),  # W&B's pydantic dump, as a warning
    ({"WANDB_MODE": "garbage"}, ["sweep", "sweeps/degradation_digits.yaml", "{ROOT}"]),
    ({"SLURM_JOB_ID": "12", "SLURM_NTASKS": "abc"}, ["train", *TINY, "{ROOT}"]),
    ({"SLURM_JOB_ID": "12", "SLURM_NTASKS": "2", "SLURM_PROCID": "-1"}, ["train", *TINY, "{ROOT}"]),
    ({"SLURM_RESTART_COUNT": "1e3"}, ["train", *TINY, "{ROOT}"]),
    ({"SLURM_JOB_ID": "12", "SLURM_NTASKS": "x"}, ["test", "{RUN}"]),
    # a leftover rank (tests/slurm/test_env.py): it trained without writing its records
    ({"LOCAL_RANK": "1"}, ["train", "--resume", "{RUN}", "trainer.max_epochs=3"]),
    ({"LOCAL_RANK": "1"}, ["test", "{RUN}"]),
    ({"SLURM_PROCID": "1"}, ["sweep", "sweeps/degradation_digits.yaml", "{ROOT}", "--dry-run"]),
    ({"RANK": "2"}, ["bench", *TINY, "--steps", "1", "--rounds", "1", "--no-pipelines"]),
    ({"RANK": "abc"}, ["train", *TINY, "{ROOT}"]),
    ({"SLURM_JOB_ID": "abc"}, ["train", *TINY, "{ROOT}"]),  # was recorded in summary.json
]


def cases() -> list[tuple[dict, list[str]]]:
    """(environment variables, argv template) of every case."""
    specs = [["sweep", "{T}/" + name, "--dry-run"] for name in FILES if name.startswith("spec_")]
    plain = (TRAIN + OTHER + specs + CONFIG_CASES + RUN_CASES + DATA_CASES + SWEEP_CASES
             + CRAFTED_CASES)
    return [({}, c) for c in plain] + ENV_CASES


def fill(template: list[str], t: Path, run: Path) -> list[str]:
    values = {"{T}": str(t), "{ROOT}": f"run.root={t}/runs", "{RUN_ID}": run.name,
              "{RUN}": str(run), "{CKPT}": str(run / "checkpoints" / "best.ckpt")}
    out = []
    for arg in template:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


def completed_run(t: Path) -> Path:
    """A real, completed run (two epochs, tested) for the cases that attack a run's records."""
    cfg = load([], [*TINY, "trainer.max_epochs=2", "trainer.progress_bar=false",
                    f"run.root={t}/done", "run.name=done"])
    with contextlib.redirect_stdout(io.StringIO()):
        return t / "done" / "done" / train.fit(cfg)["run_id"]


def snapshot(t: Path) -> dict[str, str]:
    """Every path under `t` with the sha256 of each regular file's bytes, a run's `.lock` too (a
    refusal under the lock, a resume it cannot honour, leaves it as it was)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink()
            else "" for p in t.rglob("*")}


@contextlib.contextmanager
def environment(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def write_files(t: Path) -> None:
    for name, data in FILES.items():
        (t / name).write_bytes(data)
    (t / "loop").symlink_to(t / "loop")
    for split in ("train", "val"):  # image folders: classes without images; one class only
        for c in ("cat", "dog"):
            (t / "empty_classes" / split / c).mkdir(parents=True)
        (t / "one_class" / split / "cat").mkdir(parents=True)
    write_bad_data(t)  # DATA_CASES' damaged datasets and weights files, under t/data


def refusals(t: Path) -> tuple[int, list[str]]:
    """(number of cases, the cases that were not refused in one sentence with nothing written)."""
    write_files(t)
    run = completed_run(t)
    craft(t, run)
    before = snapshot(t)
    problems = []
    all_cases = cases()
    for env, template in all_cases:
        args = fill(template, t, run)
        with environment(env):
            r = run_main(*args)
        lines = r.stderr.strip().splitlines()
        if r.returncode != 2 or len(lines) != 1 or "Traceback" in r.stderr:
            problems.append(f"{args[:1] + args[-2:]}: exit {r.returncode}, {r.stderr[-300:]!r}")
        elif (after := snapshot(t)) != before or (ROOT / "pwned").exists():
            changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            problems.append(f"{args[:1] + args[-2:]}: wrote or changed {sorted(changed)[:5]}")
            before = after
    return len(all_cases), problems


def test_every_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    n, problems = refusals(tmp_path)
    assert n >= 250 and not problems, f"{n} cases\n" + "\n".join(problems)
    with capsys.disabled():
        print(f"\n{n} bad inputs: each refused in one sentence (exit 2), nothing written")


if __name__ == "__main__":
    os.chdir(ROOT)
    os.environ.setdefault("WANDB_MODE", "disabled")
    count, failed = refusals(Path(tempfile.mkdtemp()))
    print("\n".join(failed))
    print(f"{count} bad inputs: {count - len(failed)} refused in one sentence with nothing "
          f"written, {len(failed)} not")
    sys.exit(1 if failed else 0)
