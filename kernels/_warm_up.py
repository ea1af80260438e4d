"""Compile the CPU kernels in a background process while the program does its other start-up work.

    import tinynet
    tinynet.kernels.warm_up()      # returns at once; call it before reading data and building the model

numba compiles each kernel at its first call (about 5 CPU-seconds for the kernels of AlexNet's
first training step on an empty cache) and writes the machine code to its cache
(``NUMBA_CACHE_DIR`` or ``kernels/__pycache__``); later processes load it in milliseconds.
On a fresh install that first compilation sits between the program's start and its first
training step.  ``warm_up()`` moves it off that path: a child process (numba's compiler holds a
process-wide lock, so threads would compile one after the other, and they would hold the GIL)
runs every CPU kernel once on tiny float32 arrays -- through the same launch code as real
calls, so the signatures are the ones training needs -- which fills the cache, while this
process reads photos and draws weights.

How the two processes share the cache without racing:

* numba writes every cache file to a temporary name and renames it into place (atomic on
  POSIX), and an index entry whose data file is not there yet reads as a miss: a process
  never loads half a file;
* each kernel is compiled by one process only: the first of the two to reach a kernel claims it
  by creating a file named after it in a folder the two share (``O_CREAT | O_EXCL``: exactly one
  creation succeeds).  Before a kernel's first call here (``_numba.wait_for_warm_up``) this
  process loads it from the cache if the child has reported it done, waits for it if the child
  has claimed it, and otherwise claims it and compiles it itself; the child, reaching a kernel
  this process has claimed, skips the rest of that exercise and goes on to the next.  So the two
  compile different kernels side by side, the child working ahead of this process;
* numba's cache index is keyed by the source file's content hash, the signature and the CPU
  (name and features), so neither process can load a stale kernel or one built for another CPU.

Where every kernel is in the cache already (the usual case after the first run), ``warm_up``
starts no process.  Nor does it where no core is idle (load average above the usable cores less
one): the child's compiling then only takes CPU time from this process, which compiles each
kernel at its first call instead.  Once past the kernels of AlexNet's first training step the
child runs at the lowest priority, so kernels this program may never call (batch norm, im2col
for other networks) compile only on idle CPU time.  The image-training command
(``tinynet.train.images``, which ``examples/alexnet_catdog.py`` runs) calls ``warm_up()`` before it
builds the model and reads the photos (timings: benchmarks/README.md, "Cold start").  ``TINYNET_WARM_UP=0``
turns it off.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy

from . import _numba

__all__ = ["warm_up", "WarmUp", "kernels_to_compile"]


def _name(kernel):
    function = kernel.py_func
    return f"{function.__module__}.{function.__qualname__}"


# ----------------------------------------------------------------- what the child runs
def _exercises():
    """(op, callable) pairs, roughly in the order a training step first needs them: forward kernels,
    backward kernels, the optimiser.  Each call is tiny; it only has to reach the kernels."""
    from . import (adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, local_response_norm, max_pool2d,
                   relu, sgd_update)
    rng = numpy.random.default_rng(0)
    f32 = numpy.float32

    def array(*shape):
        return rng.standard_normal(shape).astype(f32)

    saved = {}

    def conv_forward(name, x, weight, algorithm, **geometry):
        with conv2d.use_algorithm(algorithm):
            y, saved[name] = conv2d.forward(x, weight, array(weight.shape[0]), **geometry)
        saved[name + "_y"] = y

    def conv_backward(name):
        conv2d.backward(numpy.ones_like(_needs(saved, name + "_y")), saved[name])

    def pool_pair(module, name, x, **options):
        y, saved[name] = module.forward(x, **options)
        saved[name + "_y"] = y

    def pool_backward(module, name):
        module.backward(numpy.ones_like(_needs(saved, name + "_y")), saved[name])

    def bn_forward():
        x = array(2, 4, 3, 3)
        y, saved["bn"] = batch_norm.forward(x, array(4), array(4), running_mean=numpy.zeros(4, f32),
                                            running_var=numpy.ones(4, f32), training=True)
        batch_norm.inference(x, array(4), array(4), running_mean=numpy.zeros(4, f32),
                             running_var=numpy.ones(4, f32), training=False)
        saved["bn_y"] = y

    def sgd():
        param, grad, velocity = array(8), array(8), numpy.zeros(8, f32)
        sgd_update.sgd_update(param, grad, velocity, 0.01, momentum=0.9, weight_decay=5e-4, first_step=True)
        sgd_update.sgd_update(param, grad, None, 0.01)

    # conv1-like 11x11/4 on 3 channels: space to depth + Winograd, which needs at least
    # conv2d_space_to_depth.MIN_TILES (1,024) tiles: 32 images of 36 tiles each
    big = dict(x=array(32, 3, 99, 99), weight=array(16, 3, 11, 11), stride=4, padding=0)
    # AlexNet's first step needs the first FIRST_STEP_EXERCISES (its crop-size check runs Winograd at any size,
    # so it compiles nothing else); im2col (small evaluation batches, strided layers), batch norm,
    # col2im and average pooling (ResNet, VGG with batch norm, GoogLeNet) come last
    return [
        ("local_response_norm", lambda: pool_pair(local_response_norm, "lrn", array(1, 6, 3, 3), size=5,
                                                  alpha=1e-4, beta=0.75, k=2.0)),
        ("max_pool2d", lambda: pool_pair(max_pool2d, "max", array(1, 2, 5, 5), kernel_size=3, stride=2)),
        ("adaptive_avg_pool2d", lambda: pool_pair(adaptive_avg_pool2d, "adaptive", array(1, 2, 5, 5),
                                                  output_size=(2, 2))),
        ("conv2d", lambda: conv_forward("winograd", big["x"], big["weight"], "auto",
                                        stride=big["stride"], padding=big["padding"])),
        ("relu", lambda: relu.backward(array(8192), relu.forward(array(8192))[1])),
        ("adaptive_avg_pool2d", lambda: pool_backward(adaptive_avg_pool2d, "adaptive")),
        ("max_pool2d", lambda: pool_backward(max_pool2d, "max")),
        ("local_response_norm", lambda: pool_backward(local_response_norm, "lrn")),
        ("conv2d", lambda: conv_backward("winograd")),
        ("sgd_update", sgd),
        # the first validation pass (no graph: max pooling without its argmax)
        ("max_pool2d", lambda: max_pool2d.max_pool2d_values(array(1, 2, 5, 5), 3, 2)),
        ("conv2d", lambda: conv_forward("im2col", array(1, 2, 5, 5), array(2, 2, 3, 3), "im2col",
                                        stride=1, padding=1)),
        ("batch_norm", bn_forward),
        ("batch_norm", lambda: batch_norm.backward(numpy.ones_like(_needs(saved, "bn_y")), saved["bn"])),
        ("conv2d", lambda: conv_backward("im2col")),
        # max pooling's other paths: the border of padded windows (ResNet), the kernels of
        # 2x2 at stride 2 (VGG, LeNet) and 3x3 at stride 1 (GoogLeNet), any other geometry
        ("max_pool2d", lambda: max_pool2d.max_pool2d_forward(array(1, 2, 5, 5), 3, 2, 1)),
        ("max_pool2d", lambda: max_pool2d.max_pool2d_forward(array(1, 2, 4, 4), 2, 2)),
        ("max_pool2d", lambda: max_pool2d.max_pool2d_forward(array(1, 2, 5, 5), 3, 1, 1)),
        ("max_pool2d", lambda: max_pool2d.max_pool2d_values(array(1, 2, 5, 5), 2, 1)),
        ("avg_pool2d", lambda: pool_pair(avg_pool2d, "avg", array(1, 2, 5, 5), kernel_size=3, stride=2,
                                         padding=1)),
        ("avg_pool2d", lambda: pool_backward(avg_pool2d, "avg")),
    ]


#: exercises at the head of ``_exercises()`` that reach the kernels of AlexNet's first training step
FIRST_STEP_EXERCISES = 10


def kernels_to_compile():
    """The numba dispatchers of the CPU kernels (every ``*_tasks`` function of tinynet.kernels)."""
    from . import (adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d_space_to_depth, conv2d_winograd,
                   im2col, local_response_norm, max_pool2d, relu, sgd_update)
    found = []
    for module in (adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d_space_to_depth, conv2d_winograd, im2col,
                   local_response_norm, max_pool2d, relu, sgd_update):
        for name, value in vars(module).items():
            if name.endswith("_tasks") and hasattr(value, "py_func"):
                found.append(value)
    return found


class _Skip(Exception):
    """Raised in the child at a kernel this process has claimed: the rest of that exercise is skipped."""


def _needs(saved, key):
    """``saved[key]``, or skip the exercise when the one that stores it was skipped."""
    if key not in saved:
        raise _Skip(key)
    return saved[key]


def _claim(claims, name):
    """Create ``claims/name`` if no process has: True for the first process to ask (it compiles the
    kernel), False for the other (an atomic ``O_CREAT | O_EXCL``, so exactly one process wins)."""
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False
    except OSError:        # the folder is gone (the other side has finished): nothing to share
        return True


def _child():
    """Run the exercises, printing ``done NAME`` once each kernel it has claimed is in the cache.

    A kernel the parent process has claimed is the parent's to compile: once it is in the cache the
    exercise loads it and goes on; until then the exercise stops there (``_Skip``) and the next
    starts.  After the exercises of AlexNet's first training step (``FIRST_STEP_EXERCISES``) the
    child lowers its priority to the lowest: what is left may not be needed by the program at all,
    and must not take a core from it.
    """
    claims = os.environ.get("TINYNET_WARM_UP_CLAIMS")
    claimed = []                    # kernels claimed whose first call may not have returned yet

    def report_done():
        # numba writes a kernel's cache entry after its compile event, before its first call
        # returns: only then may the parent look for it
        for name in claimed:
            print("done", name, flush=True)
        claimed.clear()

    def claim_or_skip(kernel):
        report_done()               # the kernels run one after the other: the previous call has returned
        name = _name(kernel)
        if claims is None or _claim(claims, name):
            claimed.append(name)
        elif not _cached_for_this_cpu(kernel):
            raise _Skip(name)       # the parent is compiling it; once it is cached, it only loads here

    _numba._warm_up_hook = claim_or_skip
    try:
        for index, (_, exercise) in enumerate(_exercises()):
            if index == FIRST_STEP_EXERCISES and hasattr(os, "nice"):
                os.nice(19)
            try:
                exercise()
            except _Skip:
                pass
            finally:
                report_done()       # or failed: either way the parent must not wait for it
    finally:
        if claims is not None:
            shutil.rmtree(claims, ignore_errors=True)


# ----------------------------------------------------------------- this process's side
def _cached_for_this_cpu(kernel):
    """True when the kernel's cache index holds an entry for this CPU (and the current source)."""
    try:
        cache = kernel._cache
        overloads = cache._cache_file._load_index()
        magic = kernel.targetctx.codegen().magic_tuple()
    except Exception:   # numba internals moved: assume a miss (the child then loads from the cache)
        return False
    return any(isinstance(key, tuple) and magic in key for key in overloads)


class WarmUp:
    """The running child process and what it has reported (see the module docstring)."""

    def __init__(self, process, claims):
        self.process = process
        self.claims = claims
        self.done = set()
        self.finished = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="tinynet-warm-up", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            word, _, name = line.strip().partition(" ")
            if word == "done":
                with self._changed:
                    self.done.add(name)
                    self._changed.notify_all()
        self.process.wait()
        shutil.rmtree(self.claims, ignore_errors=True)   # the child removes it too, unless it crashed
        with self._changed:
            self.finished = True
            self._changed.notify_all()

    def wait_for(self, kernel):
        """Before ``kernel``'s first call here: return at once when the child has finished it, has
        exited, or has not reached it (this process then claims it and compiles it itself); wait
        while the child has claimed it and not finished it."""
        name = _name(kernel)
        with self._changed:
            if self.finished or name in self.done:
                return
        if _claim(self.claims, name):
            return
        with self._changed:
            while name not in self.done and not self.finished:
                self._changed.wait()

    def join(self, timeout=None):
        """Wait for the child to finish every kernel; True when it has."""
        self._reader.join(timeout)
        return self.finished


_current = None


def _forget_after_fork():
    # the reader thread does not exist in a forked child: waiting there for a "done" would hang
    global _current
    _current = None
    _numba._warm_up_hook = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _cores_busy():
    """True where the load average leaves no core idle for the child (Linux, macOS); False where unknown."""
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return os.getloadavg()[0] > cores - 1
    except (AttributeError, OSError):
        return False


def warm_up(when_idle=True):
    """Start compiling the CPU kernels in a background process; returns its :class:`WarmUp`
    handle, or None where nothing needs compiling, where ``when_idle`` and no core is idle, or
    with ``TINYNET_WARM_UP=0``."""
    global _current
    if os.environ.get("TINYNET_WARM_UP", "1") == "0":
        return None
    if _current is not None and not _current.finished:
        return _current
    kernels = kernels_to_compile()
    if all(kernel.overloads or _cached_for_this_cpu(kernel) for kernel in kernels):
        return None
    if when_idle and _cores_busy():
        return None
    import tinynet
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(tinynet.__file__)))
    env = dict(os.environ)     # the same NUMBA_CACHE_DIR (kernels/_numba.py may have chosen it)
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in [env.get("PYTHONPATH")] if p])
    # one thread: the child only compiles, and its arrays are tiny
    env.update(NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", TINYNET_WARM_UP="0")
    claims = tempfile.mkdtemp(prefix="tinynet-warm-up-")
    env["TINYNET_WARM_UP_CLAIMS"] = claims
    # started in the folder that holds this tinynet: ``python -c`` puts its working folder first on
    # sys.path, and a tinynet/ there (a checkout of another version) would shadow this one
    process = subprocess.Popen(
        [sys.executable, "-c", "import tinynet.kernels._warm_up as w; w._child()"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, cwd=package_parent)
    _current = WarmUp(process, claims)
    _numba._warm_up_hook = _current.wait_for
    return _current
