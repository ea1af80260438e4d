"""Two versions of tinynet side by side in one sitting: AlexNet's step, inference and each layer.

    git worktree add /tmp/before REV
    pip install --no-deps --no-build-isolation --target /tmp/before_site /tmp/before
    (cd /tmp && python /path/to/benchmarks/before_after.py --before-site /tmp/before_site \\
                   --rounds 4 --repeats 3)     # --before-examples DIR: a version before tinynet.models

"before" is the version installed in --before-site; "after" is the tinynet this script's checkout
imports (an editable install).  Run it from a folder that holds no ``tinynet/`` (e.g. /tmp).  Each
round runs both versions in fresh processes, in alternating order, so that a change in the
machine's load hits both; the table gives the medians over rounds of each process's median.
Both import tinynet first and use 2 threads.  Measurements, not tests: never assert on them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

WORKER = r'''
import json, sys, time
import tinynet
import numpy as np
from tinynet.nn import functional as F
try:
    from tinynet.models.alexnet import AlexNet
except ImportError:      # a version before tinynet.models: its examples/ folder is on PYTHONPATH
    from models.alexnet import AlexNet

repeats = int(sys.argv[1])
rng = np.random.default_rng(0)
results = {}

def median_time(step, warmup=1):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))

tinynet.manual_seed(0)
model = AlexNet(num_classes=1000)
optimizer = tinynet.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
images = tinynet.tensor(rng.standard_normal((32, 3, 227, 227)).astype(np.float32))
labels = rng.integers(0, 1000, 32)

def train_step():
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

results["train step b=32 (img/s)"] = 32 / median_time(train_step)
model.eval()
one = tinynet.tensor(rng.standard_normal((1, 3, 227, 227)).astype(np.float32))

def infer():
    with tinynet.no_grad():
        model(one)

results["inference b=1 (img/s)"] = 1 / median_time(infer)
batch = 16
layers = {
    "conv1": (lambda x, w, b: F.conv2d(x, w, b, stride=4), (batch, 3, 227, 227), (96, 3, 11, 11)),
    "conv2": (lambda x, w, b: F.conv2d(x, w, b, padding=2), (batch, 96, 27, 27), (256, 96, 5, 5)),
    "conv3": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (batch, 256, 13, 13), (384, 256, 3, 3)),
    "conv5": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (batch, 384, 13, 13), (256, 384, 3, 3)),
    "fc6": (lambda x, w, b: F.linear(x, w, b), (batch, 9216), (4096, 9216)),
    "pool1": (lambda x: F.max_pool2d(x, 3, 2), (batch, 96, 55, 55), None),
    "norm1": (lambda x: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0), (batch, 96, 27, 27), None),
    "relu1": (lambda x: F.relu(x), (batch, 96, 55, 55), None),
    "dropout6": (lambda x: F.dropout(x, 0.5), (batch, 9216), None),
    "avgpool": (lambda x: F.adaptive_avg_pool2d(x, 6), (batch, 256, 13, 13), None),
}
for name, (function, x_shape, w_shape) in layers.items():
    x = tinynet.tensor(rng.standard_normal(x_shape).astype(np.float32), requires_grad=name != "conv1")
    args = [x]
    if w_shape:
        args += [tinynet.tensor((rng.standard_normal(w_shape) * 0.01).astype(np.float32), requires_grad=True),
                 tinynet.tensor(np.zeros(w_shape[0], np.float32), requires_grad=True)]

    def step():
        y = function(*args)
        y.backward(np.ones(y.shape, np.float32))

    results[f"{name} fwd+bwd b={batch} (ms)"] = 1000 * median_time(step)
print(json.dumps(results))
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-site", required=True, help="folder holding the 'before' tinynet (pip --target)")
    parser.add_argument("--before-examples", default=None,
                        help="the 'before' checkout's examples/ folder (a version without tinynet.models)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sides = {"before": (args.before_site, args.before_examples), "after": (None, None)}
    collected = {"before": [], "after": []}
    for round_index in range(args.rounds):
        for side in (("before", "after") if round_index % 2 == 0 else ("after", "before")):
            site, examples = sides[side]
            env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
            env.pop("PYTHONPATH", None)
            paths = [path for path in (site, examples) if path]
            if paths:
                env["PYTHONPATH"] = os.pathsep.join(paths)
            result = subprocess.run([sys.executable, "-c", WORKER, str(args.repeats)],
                                    env=env, capture_output=True, text=True)
            if result.returncode:
                sys.exit(f"{side} failed:\n{result.stderr[-3000:]}")
            collected[side].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"{side}: round {round_index + 1} of {args.rounds} done", flush=True)
    print(f"{'measure':34} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in collected["after"][0]:
        before = statistics.median(run[key] for run in collected["before"])
        after = statistics.median(run[key] for run in collected["after"])
        print(f"{key:34} {before:10.2f} {after:10.2f} {after / before:13.2f}")


if __name__ == "__main__":
    main()
