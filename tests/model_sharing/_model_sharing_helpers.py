"""Shared helpers of the model-sharing tests: a fake results tree, hand-made zips, a local HTTP server."""
from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import zipfile
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

DATASET = "Dataset005_Toy"
MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"

# The spec's example listing (01 §7.1) for `-d 5 -c 3d_fullres -f 0 1`.
SPEC_EXAMPLE = [f"{DATASET}/{MODEL}/{p}" for p in (
    "fold_0/debug.json", "fold_0/checkpoint_final.pth", "fold_0/progress.png", "fold_0/network_architecture.pdf",
    "fold_0/validation/summary.json",
    "fold_1/checkpoint_final.pth", "fold_1/progress.png", "fold_1/validation/summary.json",
    "crossval_results_folds_0_1/summary.json", "crossval_results_folds_0_1/postprocessing.pkl",
    "plans.json", "dataset_fingerprint.json", "dataset.json")] + [f"{DATASET}/inference_information.json"]


def _touch(path: str, content: Optional[bytes] = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content if content is not None else os.path.basename(path).encode())


def make_fake_results_tree(results: str) -> Dict[str, str]:
    """Files with the names of a trained 3d_fullres model (folds 0, 1) of Dataset005_Toy; no real checkpoint."""
    m = os.path.join(results, DATASET, MODEL)
    for f in ("debug.json", "checkpoint_final.pth", "checkpoint_best.pth", "progress.png",
              "network_architecture.pdf", "training_log_2024.txt", "validation/summary.json",
              "validation/case_000.nii.gz", "validation/case_000.npz", "validation/case_000.pkl"):
        _touch(os.path.join(m, "fold_0", f))
    for f in ("checkpoint_final.pth", "progress.png", "validation/summary.json", "validation/case_001.nii.gz"):
        _touch(os.path.join(m, "fold_1", f))
    for f in ("summary.json", "postprocessing.pkl", "case_000.nii.gz", "case_001.nii.gz"):
        _touch(os.path.join(m, "crossval_results_folds_0_1", f))
    for f in ("plans.json", "dataset_fingerprint.json", "dataset.json"):
        _touch(os.path.join(m, f), json.dumps({"name": f}).encode())
    # an ensemble of another trainer: must not be exported
    other = "ensemble___nnUNetTrainerX__nnUNetPlans__2d___nnUNetTrainerX__nnUNetPlans__3d_fullres___0_1"
    _touch(os.path.join(results, DATASET, "ensembles", other, "summary.json"))
    _touch(os.path.join(results, DATASET, "inference_information.json"), b"{}")
    _touch(os.path.join(results, DATASET, "inference_instructions.txt"))
    return {"model": m}


def make_zip(path: str, members: Dict[str, bytes], symlinks: Dict[str, str] = None) -> str:
    """A zip with the given file members (names used verbatim) and symlink members (name -> target)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def all_files(root: str) -> list:
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(out)


@contextmanager
def serve_bytes(routes: Dict[str, bytes], content_length: bool = True) -> Iterator[str]:
    """Serve ``routes`` (path -> body) on 127.0.0.1 in a daemon thread; yields the base URL; unknown path -> 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # connection closes after the body: no Content-Length needed

        def do_GET(self):  # noqa: N802 (http.server API)
            body = routes.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            if content_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
