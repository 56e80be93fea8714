"""`reslab bench` measures; it asserts no speed. These tests check that both loops really train
the requested steps on the same setup and that the report is complete."""

from __future__ import annotations

import json

from conftest import reslab


def test_bench_reports_both_loops_and_the_pipelines():
    r = reslab("bench", "configs/bench/cifar_cpu.yaml", "model.depth=8", "data.size=1024",
               "data.batch_size=32", "trainer.channels_last=true", "--steps", "3",
               "--rounds", "1", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    for key in ("reslab_images_per_s", "plain_images_per_s", "ratio", "reslab_ms_per_step",
                "plain_ms_per_step", "peak_memory_mb", "memory_images_per_s",
                "dataloader_images_per_s", "pipeline_speedup"):
        assert result[key] > 0, key
    assert result["ratio"] == result["reslab_images_per_s"] / result["plain_images_per_s"]
    assert result["batch_size"] == 32 and result["device"] == "cpu"
