"""Import a command-line script of examples/ as a module, for tests that call its ``main`` in process.

The scripts are not a package and are not installed (they are command lines over the library);
``load_script("lenet_mnist")`` loads ``examples/lenet_mnist.py`` from its path, once per test
run, without putting examples/ on ``sys.path``.
"""
import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_script(name):
    """The module of ``examples/<name>.py`` (the same object on every call, so tests can patch it)."""
    key = f"tinynet_examples.{name}"
    if key not in sys.modules:
        path = EXAMPLES / f"{name}.py"
        if not path.is_file():
            raise FileNotFoundError(f"no script {path}")
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]
