"""Readers for a run folder's files, shared by the comparison scripts (standard library only)."""

import ast
import json
import math
import struct


def jsonl(path):
    """The records of a JSON-lines file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def npy_rows(path):
    """Rows of a 2-D little-endian float32 .npy file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file")
    major = data[6]
    hlen, start = (struct.unpack("<H", data[8:10])[0], 10) if major == 1 else (struct.unpack("<I", data[8:12])[0], 12)
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise SystemExit(f"{path}: expected little-endian float32 in C order")
    rows, cols = header["shape"] if len(header["shape"]) == 2 else (0, 0)
    body = data[start + hlen:]
    return [struct.unpack_from(f"<{cols}f", body, 4 * cols * r) for r in range(rows)]


def cosine(u, v):
    """Cosine between two vectors (0 where one is all zeros)."""
    return sum(p * q for p, q in zip(u, v)) / (math.sqrt(sum(p * p for p in u) * sum(q * q for q in v)) or 1.0)
