#!/usr/bin/env python3
"""Make OpenCV Zoo's YuNet (face_detection_yunet_2023mar.onnx) run at any input size that is a
multiple of 32, so a 16:9 frame is detected at 640x384 instead of letterboxed into 640x640
(about 40 % fewer pixels for the model to look at).

The graph itself is size-agnostic (its Resize nodes scale by 2, its Reshapes use -1); only the
declared shapes are fixed. This script
  1. makes the input's H and W symbolic ("H", "W"),
  2. makes the anchor dimension of the twelve outputs symbolic,
  3. drops the stored intermediate shapes (value_info), which were inferred for 640x640,
and checks with ONNX Runtime, before writing the output, that the result gives exactly the same
outputs as the original at 640x640 and runs at 640x384 with the expected anchor counts.

Usage: prepare_yunet.py INPUT.onnx OUTPUT.onnx
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def run(model_bytes, x):
    s = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))


def main():
    src, dst = sys.argv[1:]
    model = onnx.load(src)
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = f"anchors_{out.name.split('_')[-1]}"
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    prepared = model.SerializeToString()

    rng = np.random.default_rng(0)
    square = (rng.random((1, 3, 640, 640), dtype=np.float32) * 255).astype(np.float32)
    before, after = run(open(src, "rb").read(), square), run(prepared, square)
    worst = max(float(np.abs(before[k] - after[k]).max()) for k in before)
    if worst != 0.0:
        sys.exit(f"prepared YuNet differs from the original at 640x640 (max abs diff {worst})")
    wide = run(prepared, square[:, :, :384, :])
    for stride in (8, 16, 32):
        want = (384 // stride) * (640 // stride)
        if wide[f"cls_{stride}"].shape[1] != want:
            sys.exit(f"prepared YuNet at 640x384 gives {wide[f'cls_{stride}'].shape[1]} anchors at stride {stride}, not {want}")
    with open(dst, "wb") as f:
        f.write(prepared)
    print(f"wrote {dst}: identical at 640x640, runs at any multiple of 32")


if __name__ == "__main__":
    main()
