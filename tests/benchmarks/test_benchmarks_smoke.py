"""The benchmark runner and the step profiler run end to end at tiny sizes (no timing checks).

Kept cheap: the smoke run's AlexNet has 10 classes and its zoo section builds ResNet-18 alone
(``run.py --smoke``); the other networks run the same code with more weights to draw.

Both run in a subprocess, as they are used: they set their own thread counts, which must
not leak into the test session.  The smoke run uses synthetic JPEGs, so it needs no data.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYERS = ["conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5",
          "pool5", "dropout6", "fc6", "dropout7", "fc7", "fc8"]


def _run(arguments, timeout=600):
    done = subprocess.run([sys.executable] + arguments, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(arguments)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def test_runner_quick_smoke(tmp_path):
    report, table = tmp_path / "results.json", tmp_path / "table.md"
    out = _run(["benchmarks/run.py", "--quick", "--smoke", "--json", str(report), "--markdown", str(table)])
    results = json.loads(report.read_text())

    assert results["same_weights_check"] < 1e-4          # tinynet and torch run the same function
    assert list(results["layers"]) == LAYERS
    for name, layer in results["layers"].items():
        for framework in ("tinynet_s", "torch_s"):
            assert len(layer[framework]["fwd"]) == len(layer[framework]["bwd"]) >= 1, name
    assert set(results["net"]["inference"]) == {"1", "2"}
    assert set(results["net"]["train_step"]) == {"2"}
    assert results["data"]["tinynet_img_per_s"] and results["data"]["torch_img_per_s"]
    for framework in ("tinynet", "torch"):
        assert results["memory"][framework]["step_bytes"] > 0
    assert results["machine"]["threads"] == 2
    # the default order is the user's (NumPy and PyTorch first), and PyTorch keeps its own settings
    settings = results["thread_settings"]
    assert settings["modules"] == ["numpy", "torch", "tinynet"]
    assert settings["OMP_WAIT_POLICY_when_torch_loaded"].startswith("unset")
    assert set(settings["openblas_thread_timeout"].values()) == {4}     # tinynet's, applied after NumPy
    # tinynet's kernels run on its own threads: the only OpenMP runtime in the process is PyTorch's
    assert all("torch" in path for path in settings["openmp_runtimes"]), settings["openmp_runtimes"]
    zoo = results["zoo"]
    assert list(zoo["networks"]) == ["resnet18"]
    for name, network in zoo["networks"].items():
        assert network["same_function_check"] < 1e-4, name               # the torch twin is the same net
        assert len(network["tinynet_s"]) == len(network["torch_s"]) >= 1
    assert len(zoo["layers"]) == 5 and any(label.startswith("batchnorm2d") for label in zoo["layers"])

    lines = out.strip().splitlines()
    assert any(line.startswith("alexnet train_step b=2 67px: tinynet ") and ", ratio " in line for line in lines)
    assert any(line.startswith("alexnet inference b=1 67px: tinynet ") for line in lines)
    assert any(line.startswith("peak memory train_step b=2 67px: ") for line in lines)
    assert any(line.startswith("data pipeline synthetic ") for line in lines)
    assert any(line.startswith("resnet18 train_step b=2 32px: tinynet ") for line in lines)
    assert "| conv1 fwd+bwd b=2 |" in table.read_text()


def test_runner_reports_both_import_orders(tmp_path):
    report = tmp_path / "both.json"
    out = _run(["benchmarks/run.py", "--smoke", "--only", "net", "--import-order", "both",
                "--infer-batches", "1", "--train-batches", "2", "--json", str(report)])
    results = json.loads(report.read_text())
    assert set(results["runs"]) == {"numpy-first", "tinynet-first"}
    for order, run in results["runs"].items():
        assert run["thread_settings"]["import_order"] == order
        assert run["thread_settings"]["OMP_WAIT_POLICY_when_torch_loaded"].startswith("unset")
        assert set(run["thread_settings"]["openblas_thread_timeout"].values()) == {4}
    names = [row["name"] for row in results["table"]]
    assert "alexnet train_step b=2 67px [numpy-first]" in names
    assert "alexnet train_step b=2 67px [tinynet-first]" in names
    assert "both import orders" in out


def test_profile_step_smoke():
    out = _run(["benchmarks/profile_step.py", "--batch", "2", "--size", "67", "--steps", "1",
                "--classes", "10"])
    for category in ("GEMM (conv)", "GEMM (FC)", "im2col", "col2im", "LRN", "max pool",
                     "SGD update", "Python / autograd / untimed"):
        assert category in out, category
    assert "by group: " in out


def test_separate_processes_smoke(tmp_path):
    """Each framework in its own process: the tinynet process never loads PyTorch, every row has both."""
    out = _run(["benchmarks/separate_processes.py", "--smoke", "--models", "alexnet", "--json",
                str(tmp_path / "separate.json")])
    assert "each framework in its own processes" in out and "alexnet train_step b=2 67px" in out
    report = json.loads((tmp_path / "separate.json").read_text())
    assert [row["benchmark"] for row in report["table"]] == ["alexnet inference b=2 67px",
                                                               "alexnet train_step b=2 67px"]
    for row in report["table"]:
        assert row["tinynet_img_s"] > 0 and row["torch_img_s"] > 0
        assert abs(row["ratio"] - row["tinynet_img_s"] / row["torch_img_s"]) < 1e-9


def test_gflops_counts_the_direct_work_of_alexnet(tmp_path):
    """benchmarks/gflops.py: forward, weight gradient and input gradient of every conv and linear
    layer at 2 FLOP per direct multiply-add, and conv1 without an input gradient; every leaf layer
    in the per-layer table."""
    report = tmp_path / "gflops.json"
    out = _run(["benchmarks/gflops.py", "--smoke", "--models", "alexnet,resnet18", "--json", str(report)])
    assert "sgemm peak through NumPy" in out and "% of the GEMM peak" in out
    networks = {n["model"]: n for n in json.loads(report.read_text())["networks"]}
    # AlexNet at 67 px: conv1 15x15 out, pool1 7, conv2 7 (pad 2), pool2 3, conv3-5 3x3, the adaptive
    # pool brings 6x6x256 = 9216 to fc6 (the registry's AlexNet: one group per layer)
    conv1 = 15 * 15 * 96 * 3 * 11 * 11
    others = (7 * 7 * 256 * 96 * 5 * 5 + 3 * 3 * 384 * 256 * 9 + 3 * 3 * 384 * 384 * 9
              + 3 * 3 * 256 * 384 * 9 + 9216 * 4096 + 4096 * 4096 + 4096 * 10)
    batch = networks["alexnet"]["batch"]
    assert networks["alexnet"]["direct_flops"] == 2 * batch * (2 * conv1 + 3 * others)
    layers = {name for entry in networks["alexnet"]["layers"] for name in entry["names"]}
    assert {"features.conv1", "features.norm1", "features.pool5", "classifier.fc8"} <= layers
    first = [e for e in networks["alexnet"]["layers"] if e["names"] == ["features.conv1"]][0]
    assert first["input_grad"] is False and first["flops"] == 2 * batch * 2 * conv1
    resnet = networks["resnet18"]
    blocks = [e for e in resnet["layers"] if "layer1.0.conv1" in e["names"]][0]
    assert len(blocks["names"]) == 4        # layer1's four 3x3 64->64 convolutions share one timing
    assert resnet["gflop_s"] == resnet["direct_flops"] / resnet["step_s"] / 1e9
