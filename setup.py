"""Install tinynet, with two folders of the repository as subpackages: ``kernels/`` as
tinynet.kernels and ``examples/models/`` as tinynet.models.

The mapping lives in ``package_dir``; a source checkout used without installing
(``python -m pytest`` from the repository root) finds both through
``tinynet/_subpackages.py`` instead, which also makes a checkout use its own folders
even beside another checkout's editable install.
"""
from setuptools import find_packages, setup

# found, not listed: a new subpackage cannot be forgotten by a regular (non-editable) install
PACKAGES = find_packages(include=["tinynet", "tinynet.*"])

MPI = ["mpi4py>=4.0", "mpich>=4.2"]

setup(
    name="tinynet-from-scratch",  # "tinynet" on PyPI is an unrelated 2020 package
    version="0.1.0",
    description="A deep-learning framework written from scratch on NumPy and CuPy: AlexNet, and the math of every layer",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES + ["tinynet.kernels", "tinynet.models"],
    package_dir={"tinynet.kernels": "kernels", "tinynet.models": "examples/models"},
    install_requires=[
        "numpy>=2.0,<2.6",
        "numba>=0.68,<0.69",
        "pillow>=10",
        "tqdm>=4.60",
    ],
    extras_require={
        "gpu": ["cupy-cuda13x>=14", "numba-cuda"],
        # data-parallel training (tinynet.distributed): mpi4py and an MPI runtime from the package
        # index (the mpich wheel brings mpiexec); on GPUs NCCL too.  The tests run under mpiexec.
        "mpi": MPI,
        "gpu-distributed": ["cupy-cuda13x>=14", "numba-cuda", "nvidia-nccl-cu13"] + MPI,
        # the explainer's page and its browser test are part of the suite (Chromium itself is a system
        # package: apt-get install chromium chromium-driver, as .ci/run does)
        "test": ["pytest>=8", "hypothesis>=6.100", "matplotlib>=3.7", "jinja2>=3.1", "selenium>=4.20"] + MPI,
        # test oracles: PyTorch for the layers, SciPy for the confidence intervals
        "oracle": ["torch==2.13.0", "scipy>=1.10"],
        "plot": ["matplotlib>=3.7"],
        # examples/explain.py's page (a Jinja2 template) and its browser test (Selenium drives Chromium)
        "explain": ["jinja2>=3.1"],
        "browser": ["selenium>=4.20"],
    },
    license="MIT",
)
