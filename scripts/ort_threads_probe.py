#!/usr/bin/env python3
"""How ONNX Runtime scales on this machine: one session with N intra-op threads against N
one-thread sessions side by side (what the harvest's model workers do), for SFace at several
batch sizes and YuNet at 640x640. Spinning off, as in the harvest. Prints medians of 3 rounds.

This is the evidence behind two README claims: that the model floor (one N-thread session, best
batch) is also, within a few percent, the floor of the worker-pool arrangement; and that the
pool wins on the small calls a harvest makes (one frame's 1-3 crops).

Usage: .deps/venv/bin/python scripts/ort_threads_probe.py [--threads 2] [--models .deps/models]
"""
import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def per_item_ms(sessions, x, items):
    """Runs `items` inputs' worth of calls split evenly over `sessions` side by side."""
    name = sessions[0].get_inputs()[0].name
    calls = items // x.shape[0] // len(sessions)

    def loop(s):
        for _ in range(calls):
            s.run(None, {name: x})

    threads = [threading.Thread(target=loop, args=(s,)) for s in sessions]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.perf_counter() - start) * 1e3 / (calls * x.shape[0] * len(sessions))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / ".deps" / "models"))
    a = p.parse_args()
    n = a.threads
    models = Path(a.models)
    rng = np.random.default_rng(0)
    cases = [("SFace", models / "face_recognition_sface_2021dec_fp32.onnx", (b, 3, 112, 112), 192) for b in (1, 2, 4, 8)]
    cases.append(("YuNet", models / "face_detection_yunet_2023mar.onnx", (1, 3, 640, 640), 96))
    print(f"| model | input | one {n}-thread session, ms/item | {n} one-thread sessions side by side, ms/item |")
    print("|---|---|---|---|")
    for label, path, shape, items in cases:
        x = (rng.random(shape, dtype=np.float32) * 255).astype(np.float32)
        wide = [session(path, n)]
        pool = [session(path, 1) for _ in range(n)]
        for s in wide + pool:
            s.run(None, {s.get_inputs()[0].name: x})
        rounds = [(per_item_ms(wide, x, items), per_item_ms(pool, x, items)) for _ in range(3)]
        one, side = (statistics.median(r[i] for r in rounds) for i in (0, 1))
        print(f"| {label} | {'x'.join(map(str, shape))} | {one:.1f} | {side:.1f} |")


if __name__ == "__main__":
    main()
