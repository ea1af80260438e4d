"""Attach the subpackages that live outside ``tinynet/`` in the source tree.

Two folders of the repository install as subpackages of tinynet (setup.py maps them):

* ``kernels/``        -> ``tinynet.kernels``  (the hand-written math)
* ``examples/models/`` -> ``tinynet.models``   (the registry of the course's networks)

A regular install copies them into ``site-packages/tinynet/``, where the ordinary import
system finds them.  A source tree -- an editable install, or any checkout used directly with
``python -m pytest`` at its root -- has no ``tinynet/kernels`` folder, and the import system
would then ask the finders on ``sys.meta_path``: an editable install of *another* checkout
answers them with *its* folders, so a copy of the project would silently run the other
copy's kernels.  So when the imported ``tinynet/`` sits in a source tree (its parent holds
``setup.py`` and the subpackage's folder), the subpackage is always loaded from that same
tree, under its installed name; the finders are asked only otherwise.  No symlink is needed
(Windows checkouts turn symlinks into plain text files).
"""
import importlib.util
import os
import sys

#: subpackage name -> its folder in the source tree, relative to the repository root
SOURCE_FOLDERS = {"kernels": "kernels", "models": os.path.join("examples", "models")}


def source_folder(package_dir: str, subpackage: str):
    """The source tree's folder of ``subpackage``, or None when ``package_dir`` is an install."""
    package_dir = os.path.abspath(package_dir)
    if os.path.isdir(os.path.join(package_dir, subpackage)):
        return None                       # a regular install: the subpackage was copied in
    root = os.path.dirname(package_dir)
    folder = os.path.join(root, SOURCE_FOLDERS[subpackage])
    if os.path.isfile(os.path.join(root, "setup.py")) and os.path.isfile(os.path.join(folder, "__init__.py")):
        return folder
    return None


def attach(package_name: str, package_dir: str, subpackage: str):
    """Import ``package_name.subpackage`` from this tree's own folder (or from the install)."""
    name = f"{package_name}.{subpackage}"
    if name in sys.modules:
        return sys.modules[name]
    folder = source_folder(package_dir, subpackage)
    if folder is None:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError(
                f"{name} not found: neither an installed subpackage nor the source folder "
                f"{SOURCE_FOLDERS[subpackage]!r} beside {package_dir!r}; reinstall with 'pip install .'")
    else:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[package_name], subpackage, module)
    return module
