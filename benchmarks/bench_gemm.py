"""One sgemm at AlexNet's conv and FC shapes: NumPy's BLAS against PyTorch's (a diagnostic).

A section of ``python benchmarks/run.py`` (``--only gemm``).
"""
from __future__ import annotations

import time

from harness import _alternate, _median


# ====================================================================== BLAS diagnostic
def bench_gemm(args, table, results):
    """NumPy's sgemm against torch's at AlexNet's shapes (what conv and FC rest on).

    Each case is (m, k, n, layout): "NN" is A (m, k) @ B (k, n); "NT" is A (m, k) @ B.T with
    B stored (n, k) -- the form of conv2d_backward's dW = dY @ cols.T, where k = N*OH*OW is
    long; "TN'" computes the same dW as (cols @ dY.T).T, an alternative for the kernel.
    """
    import numpy as np
    import torch
    b, s = args.layer_batch, args.size
    conv1_out = (s - 11) // 4 + 1
    pool1_out = (conv1_out - 3) // 2 + 1
    k1 = b * conv1_out * conv1_out
    cases = [
        ("sgemm conv2 fwd W@cols", 256, 96 * 25, b * pool1_out * pool1_out, "NN"),
        ("sgemm conv1 dW dY@cols.T", 96, k1, 3 * 11 * 11, "NT"),
        ("sgemm conv1 dW (cols@dY.T).T", 96, k1, 3 * 11 * 11, "TN'"),
        ("sgemm fc6 fwd x@W.T", b, 9216, 4096, "NT"),
        ("sgemm fc8 fwd x@W.T", b, 4096, args.classes, "NT"),
    ]
    rng = np.random.default_rng(3)
    results["gemm"] = {}
    warmup, reps = args.layer_reps
    for name, m, k, n, layout in cases:
        a = rng.standard_normal((m, k)).astype(np.float32)
        bt = rng.standard_normal((n, k)).astype(np.float32) if layout != "NN" else None
        bn = rng.standard_normal((k, n)).astype(np.float32) if layout == "NN" else None
        ta = torch.from_numpy(a)
        tb = torch.from_numpy(bn if layout == "NN" else bt)

        def run_numpy():
            t0 = time.perf_counter()
            if layout == "NN":
                np.matmul(a, bn)
            elif layout == "NT":
                np.matmul(a, bt.T)
            else:
                np.matmul(bt, a.T).T
            return {"s": time.perf_counter() - t0}

        def run_torch():
            t0 = time.perf_counter()
            torch.matmul(ta, tb if layout == "NN" else tb.T)
            return {"s": time.perf_counter() - t0}

        tiny, ref = _alternate([run_numpy, run_torch], warmup, max(3, reps))
        flops = 2.0 * m * k * n
        t, r = flops / _median(tiny["s"]) / 1e9, flops / _median(ref["s"]) / 1e9
        results["gemm"][name] = {"m": m, "k": k, "n": n, "layout": layout,
                                 "numpy_s": tiny["s"], "torch_s": ref["s"]}
        table.add(f"{name} ({m}x{k}x{n})", "GFLOP/s", t, r, t / r,
                  note="numpy BLAS vs torch BLAS" + ("; torch: dY@cols.T" if layout == "TN'" else ""))
