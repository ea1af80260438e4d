"""tinynet.kernels and tinynet.models import from a source checkout, an editable install and a regular
install, and a source checkout always uses its own folders."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_photos(folder, per_class, size):
    """A few JPEGs in Kaggle's flat layout (cat.N.jpg, dog.N.jpg), reddish and bluish."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, colour in (("cat", (170, 90, 70)), ("dog", (80, 100, 170))):
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 60, size[::-1] + (3,)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}.{i}.jpg")
    return folder


def _run(code, cwd, env_extra=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_source_checkout_finds_kernels_from_the_repository_root():
    result = _run("import tinynet, tinynet.kernels.conv2d as c; print(c.__file__)", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == ROOT / "kernels" / "conv2d.py"


def test_regular_install_has_kernels_and_source_tree_still_wins_at_the_root(tmp_path):
    target = tmp_path / "site"
    # build from a clean copy: a stale build/ folder in the checkout would hide a forgotten subpackage
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "runs", ".hypothesis", ".pytest_cache"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    if install.returncode != 0 and "No module named" in install.stderr:
        pytest.skip("setuptools is not available to build the package: " + install.stderr[-200:])
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "tinynet" / "kernels" / "conv2d.py").is_file()
    assert (target / "tinynet" / "models" / "resnet.py").is_file()
    # every subpackage of the source tree, and every kernel module, imports from the installed copy
    subpackages = sorted("tinynet." + ".".join(p.parent.relative_to(ROOT / "tinynet").parts)
                         for p in (ROOT / "tinynet").rglob("__init__.py") if p.parent != ROOT / "tinynet")
    kernel_modules = sorted("tinynet.kernels." + p.stem for p in (ROOT / "kernels").glob("*.py")
                            if p.stem != "__init__")
    kernel_modules += sorted("tinynet.models." + p.stem for p in (ROOT / "examples" / "models").glob("*.py")
                             if p.stem != "__init__")
    assert "tinynet.nn" in subpackages and "tinynet.kernels.conv2d" in kernel_modules
    code = ("import importlib, tinynet\n"
            f"for name in {subpackages + kernel_modules!r}:\n"
            "    module = importlib.import_module(name)\n"
            f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n")
    result = _run(code, cwd=tmp_path, env_extra={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-2000:]
    # elsewhere: the installed copy is used, kernels included
    result = _run("import tinynet.kernels.conv2d as c; print(c.__file__)", cwd=tmp_path,
                  env_extra={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    # the registry installs with the package: build a network and rebuild it from a checkpoint
    code = ("import tinynet, tinynet.models as m\n"
            "print(m.__file__)\n"
            "assert 'resnet18' in m.names() and 'alexnet' in m.names()\n"
            "net = m.create('resnet20', num_classes=3)\n"
            "tinynet.save(m.checkpoint_entries(net), 'net.npz')\n"
            "again = m.model_from_checkpoint('net.npz')\n"
            "assert type(again).__name__ == type(net).__name__ and again.num_parameters() == net.num_parameters()\n")
    result = _run(code, cwd=tmp_path, env_extra={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(str(target / "tinynet" / "models"))
    # a checkpoint written by `alexnet_catdog.py --model resnet20` in the source tree rebuilds and
    # predicts with the installed command, in another folder
    photos = write_photos(tmp_path / "photos", per_class=6, size=(40, 36))
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, str(ROOT / "examples" / "alexnet_catdog.py"), "--model", "resnet20",
                              "--data", str(photos), "--image-size", "32", "--batch-size", "4", "--epochs", "1",
                              "--workers", "0", "--no-ten-crop", "--out", str(run)],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    predicted = _run(f"import sys; from tinynet.train.images import GENERIC, main; "
                     f"sys.exit(main(['--predict', {str(photos / 'cat.0.jpg')!r}, '--checkpoint', "
                     f"{str(run / 'best.npz')!r}], command=GENERIC))", cwd=tmp_path,
                     env_extra={"PYTHONPATH": str(target)})
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert re.fullmatch(re.escape(str(photos / "cat.0.jpg")) + r": (cat|dog) [01]\.\d{3}, (cat|dog) [01]\.\d{3}\n",
                        predicted.stdout), predicted.stdout
    # the same probabilities as the source tree's command gives from the same file
    source = subprocess.run([sys.executable, str(ROOT / "examples" / "alexnet_catdog.py"), "--predict",
                             str(photos / "cat.0.jpg"), "--checkpoint", str(run / "best.npz")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert source.returncode == 0 and source.stdout == predicted.stdout, (source.stdout, source.stderr[-1000:])
    # from the repository root (as `python -m pytest` runs): the source tinynet/ comes first and
    # must still find ../kernels
    result = _run("import tinynet.kernels.conv2d as c; print(c.__file__)", cwd=ROOT,
                  env_extra={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == ROOT / "kernels" / "conv2d.py"


def test_a_copy_of_the_project_uses_its_own_kernels_and_models_beside_another_install(tmp_path):
    """The suite runs with this checkout installed (editable, in CI); a copy of the project -- a
    clone to plant a bug in, say -- run from its own root must import its own folders, not this
    checkout's through the editable install's finder."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "runs", ".hypothesis", ".pytest_cache"))
    code = ("import tinynet.kernels.conv2d as c, tinynet.models.resnet as r, tinynet.nn as n\n"
            "print(c.__file__); print(r.__file__); print(n.__file__)")
    result = _run(code, cwd=copy)
    assert result.returncode == 0, result.stderr[-2000:]
    paths = [Path(line).resolve() for line in result.stdout.split()]
    assert paths == [copy / "kernels" / "conv2d.py", copy / "examples" / "models" / "resnet.py",
                     copy / "tinynet" / "nn" / "__init__.py"], result.stdout


def test_numba_cache_falls_back_to_a_user_folder_when_the_package_is_read_only(tmp_path, monkeypatch):
    from tinynet.kernels import _numba

    kernels_folder = os.path.dirname(os.path.abspath(_numba.__file__))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).startswith(kernels_folder)
                        else real_access(path, mode))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _numba._choose_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "tinynet" / "numba")
    assert (tmp_path / "tinynet" / "numba").is_dir()


def test_runs_where_cupy_is_absent():
    result = _run("import tinynet; print(tinynet.gpu_available())", cwd=ROOT,
                  env_extra={"TINYNET_DISABLE_GPU": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# The thread default (OPENBLAS_THREAD_TIMEOUT) in every import order:
# tests/engine/test_import_order.py.
