"""Make ``tinynet.kernels`` importable from a source checkout as well as from an install.

The hand-written kernels live in the top-level folder ``kernels/`` and install as
the subpackage ``tinynet.kernels`` (setup.py maps one onto the other).  An
installed or editable tinynet finds them through that mapping.  A source tree
used directly -- ``python -m pytest`` from the repository root, which puts the
root's ``tinynet/`` first on ``sys.path`` even when a regular install exists --
has no ``tinynet/kernels`` folder, so we load ``../kernels`` under the name
``tinynet.kernels`` ourselves.  This avoids a symlink (which Windows checkouts
turn into a plain text file).
"""
import importlib.util
import os
import sys


def attach_kernels(package_name: str, package_dir: str):
    name = package_name + ".kernels"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        source = os.path.join(os.path.dirname(os.path.abspath(package_dir)), "kernels")
        init = os.path.join(source, "__init__.py")
        if not os.path.isfile(init):
            raise ImportError(
                f"tinynet.kernels not found: neither an installed subpackage nor the source "
                f"folder {source!r}; reinstall with 'pip install -e .'")
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[source])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[package_name], "kernels", module)
    return module
