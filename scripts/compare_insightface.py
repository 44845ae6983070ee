#!/usr/bin/env python3
"""Side by side with InsightFace 0.7.3 on identical models (SCRFD-500M + fp32 SFace).

1. Times InsightFace's own loop — OpenCV decode, its SCRFD class, `norm_crop`, its ArcFaceONNX
   class one face per call, as FaceAnalysis.get does — over every frame of VIDEO.
2. Times `episode-run harvest VIDEO --stride 1 --threads N` with the same two models, once with
   our default quality gates and once with InsightFace's settings (NMS IoU 0.4, score >= 0.5, no
   gates: every face embedded, as InsightFace does).
3. Compares boxes of the second run: for every InsightFace face the best IoU among ours on the
   same frame.

InsightFace 0.7.3 routes this SCRFD export to its RetinaFace class, which cannot read the batched
outputs, so its SCRFD class is built directly. Run it in a venv holding insightface==0.7.3,
onnxruntime==1.31.1 and opencv-python-headless (see README, "Performance").

Usage: compare_insightface.py VIDEO SCRFD_ONNX SFACE_ONNX [THREADS=2]
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.model_zoo.scrfd import SCRFD
from insightface.utils import face_align

ROOT = Path(__file__).resolve().parent.parent


def iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])
    return inter / (area(a) + area(b) - inter + 1e-9)


def main():
    video, scrfd_path, sface_path = sys.argv[1:4]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = lambda p: ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"])
    det = SCRFD(model_file=scrfd_path, session=session(scrfd_path))
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    rec = ArcFaceONNX(model_file=sface_path, session=session(sface_path))
    rec.prepare(-1)

    theirs = {}
    start = time.perf_counter()
    cap = cv2.VideoCapture(video)
    idx, faces = 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        bboxes, kpss = det.detect(frame, max_num=0)
        for box, kps in zip(bboxes, kpss):
            crop = face_align.norm_crop(frame, landmark=kps, image_size=112)
            rec.get_feat(crop)
            faces += 1
        theirs[idx] = [b.tolist() for b in bboxes]
        idx += 1
    insightface_s = time.perf_counter() - start

    work = Path(tempfile.mkdtemp(prefix="episode-run-vs-insightface-"))
    same = work / "insightface-settings.toml"
    same.write_text("[detect]\nnms_iou = 0.4\nmin_score = 0.5\n\n"
                    "[quality]\nmin_face = 0.0\ndet_threshold = 0.5\nmin_blur = 0.0\nmax_yaw = 90.0\n")
    binary = ROOT / "target" / "release" / "episode-run"
    runs = {}
    for name, extra in (("default_gates", []), ("insightface_settings", ["--config", str(same)])):
        out = work / name
        start = time.perf_counter()
        subprocess.run([str(binary), "harvest", video, "--stride", "1", "--threads", str(threads), "--det-model", scrfd_path,
                        "--embed-model", sface_path, "--out", str(out), "--quiet", "--force", *extra], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        runs[name] = {"s": round(wall, 2), "faces": counts["faces_detected"], "embedded": counts["faces_embedded"],
                      "speedup": round(insightface_s / wall, 2)}
    ours = {}
    for line in (work / "insightface_settings" / "faces.jsonl").read_text().splitlines():
        row = json.loads(line)
        ours.setdefault(row["frame_idx"], []).append(row["bbox"])

    pairs = [(t[4], max((iou(t[:4], o) for o in ours.get(f, [])), default=0.0)) for f, boxes in theirs.items() for t in boxes]
    best = np.array([p[1] for p in pairs])
    misses = sorted((round(s, 3), round(i, 3)) for s, i in pairs if i < 0.9)
    print(json.dumps({
        "frames": idx,
        "insightface": {"s": round(insightface_s, 2), "faces": faces, "embedded": faces},
        "episode_run": runs,
        "iou_median": round(float(np.median(best)), 3),
        "share_iou_ge_0_9": round(float((best >= 0.9).mean()), 4),
        "below_0_9_as_score_iou": misses,
    }))


if __name__ == "__main__":
    main()
