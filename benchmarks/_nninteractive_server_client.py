"""The server path of nninteractive_trial.py: start `nninteractive-server` (the venv's console script) on the CPU with
a fabricated model folder, drive it with nnInteractiveRemoteInferenceSession, save the target buffers.

    python _nninteractive_server_client.py VENV_BIN MODEL_DIR PORT OUT.npz
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np


def main(venv_bin: str, model_dir: str, port: int, out: str) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _nninteractive_side import synthetic_image

    log = open(out + ".server.log", "w")
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [os.path.join(venv_bin, "nninteractive-server"), "--model-dir", model_dir, "--fold", "0", "--device", "cpu",
         "--no-torch-compile", "--port", str(port), "--torch-n-threads", "2", "--interactions-storage", "blosc2",
         "--no-autozoom", "--max-sessions", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

        url = f"http://127.0.0.1:{port}"
        session = None
        for _ in range(240):
            if server.poll() is not None:
                print("server exited with", server.returncode)
                return 1
            try:
                session = nnInteractiveRemoteInferenceSession(url)
                if session.ping():
                    break
            except Exception:
                session = None
            time.sleep(0.5)
        startup = time.perf_counter() - t0
        arrays = {}
        img = synthetic_image((72, 96, 84), 1)
        tb = np.zeros(img.shape[1:], np.uint8)
        t1 = time.perf_counter()
        session.set_image(img)
        session.set_target_buffer(tb)
        np.random.seed(1234)
        arrays["point"] = (session.add_point_interaction((36, 44, 42), include_interaction=True), tb.copy())[1]
        arrays["bbox2d"] = (session.add_bbox_interaction([[30, 50], [36, 60], [40, 41]], include_interaction=True),
                            tb.copy())[1]
        session.reset_interactions()
        arrays["reset"] = tb.copy()
        scribble = np.zeros(img.shape[1:], np.uint8)
        scribble[40, 40:56, 38:41] = 1
        session.add_scribble_interaction(scribble, include_interaction=True)
        arrays["scribble"] = tb.copy()
        arrays["undo_ok"] = np.array(session.undo())
        arrays["after_undo"] = tb.copy()
        session.close()
        print(f"server startup {startup:.1f} s, interactions {time.perf_counter() - t1:.1f} s")
        np.savez_compressed(out, **arrays)
        return 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
