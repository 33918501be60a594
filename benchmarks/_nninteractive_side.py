"""One side of nninteractive_trial.py: run nnInteractiveInferenceSession (CPU) on the fabricated models.

    python _nninteractive_side.py MODELS_DIR OUT_PREFIX

Writes OUT_PREFIX.npz (every target-buffer / interaction snapshot) and OUT_PREFIX.json (returned bboxes, timings,
network/plans facts, signatures of every nnunetv2 symbol nnInteractive touches).
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import time

import numpy as np
import torch

T0 = time.perf_counter()
from nnInteractive.inference.inference_session import nnInteractiveInferenceSession  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def synthetic_image(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    img = np.zeros(shape, np.float32)
    img[(x / 0.8) ** 2 + (y / 0.7) ** 2 + (z / 0.9) ** 2 < 1] = 100.0
    img[(x - 0.2) ** 2 + (y + 0.1) ** 2 + z ** 2 < 0.12] = 300.0
    img[(x + 0.3) ** 2 + (y - 0.3) ** 2 + (z - 0.2) ** 2 < 0.05] = 500.0
    img += rng.normal(0, 20, shape).astype(np.float32)
    img[:3] = 0  # zero border (outside the nonzero region used for normalisation statistics)
    return img[None]


def signatures() -> dict:
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.helpers import dummy_context, empty_cache
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager, ConfigurationManager

    out = {}
    for name, obj in [("recursive_find_python_class", recursive_find_python_class), ("dummy_context", dummy_context),
                      ("empty_cache", empty_cache), ("determine_num_input_channels", determine_num_input_channels),
                      ("PlansManager.__init__", PlansManager.__init__),
                      ("PlansManager.get_configuration", PlansManager.get_configuration),
                      ("PlansManager.get_label_manager", PlansManager.get_label_manager),
                      ("ConfigurationManager.__init__", ConfigurationManager.__init__),
                      ("nnUNetTrainer.build_network_architecture", nnUNetTrainer.build_network_architecture)]:
        try:  # parameter names, kinds and defaults (annotations differ in spelling only and are left out)
            out[name] = [(p.name, str(p.kind), repr(p.default)) for p in inspect.signature(obj).parameters.values()]
        except (TypeError, ValueError) as e:
            out[name] = f"<{type(e).__name__}>"
    out["build_network_architecture is staticmethod"] = isinstance(
        inspect.getattr_static(nnUNetTrainer, "build_network_architecture"), staticmethod)
    out["dummy_context is class"] = inspect.isclass(dummy_context)
    out["nnunetv2.__path__[0] has training/nnUNetTrainer"] = os.path.isdir(
        os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"))
    return out


def search_probe() -> dict:
    """The trainer look-up nnInteractive does, plus its speed (walks and imports every trainer module)."""
    import nnunetv2
    import nnInteractive.trainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    res = {}
    for name in ("nnUNetTrainer", "nnInteractiveTrainerV2_trial", "nnUNetTrainerNoMirroring", "nnUNetTrainer_250epochs"):
        t = time.perf_counter()
        c1 = recursive_find_python_class(nnInteractive.trainer.__path__[0], name, "nnInteractive.trainer")
        c2 = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                         "nnunetv2.training.nnUNetTrainer")
        res[name] = {"in_nnInteractive": None if c1 is None else f"{c1.__module__}.{c1.__qualname__}",
                     "in_nnunetv2": None if c2 is None else f"{c2.__module__}.{c2.__qualname__}",
                     "seconds": round(time.perf_counter() - t, 3)}
    return res


def run_model(folder: str, tag: str, arrays: dict, meta: dict, storage: str, tb_kind: str, full: bool):
    t = time.perf_counter()
    session = nnInteractiveInferenceSession(device=torch.device("cpu"), use_torch_compile=False, verbose=False,
                                            torch_n_threads=2, do_autozoom=full, interactions_storage=storage)
    session.initialize_from_trained_model_folder(folder, use_fold=0)
    m = meta.setdefault(tag, {})
    m["init_s"] = round(time.perf_counter() - t, 3)
    net = session.network
    m["network"] = f"{type(net).__module__}.{type(net).__qualname__}"
    m["n_params"] = int(sum(p.numel() for p in net.parameters()))
    m["license"] = session.license
    m["num_interaction_channels"] = session.num_interaction_channels
    m["channel_mapping"] = {k: list(v) if isinstance(v, tuple) else v for k, v in session.channel_mapping.items()}
    m["patch_size"] = [repr(type(session.configuration_manager.patch_size).__name__),
                       list(session.configuration_manager.patch_size)]
    m["label_manager"] = [type(session.label_manager).__name__, session.label_manager.num_segmentation_heads,
                          list(session.label_manager.all_labels)]
    m["trainer_name"] = session.trainer_name
    m["deep_supervision"] = bool(getattr(getattr(net, "decoder", None), "deep_supervision", False))

    steps = []

    def snap(name, ret, t_step):
        tb = session.target_buffer
        a = tb.numpy().copy() if isinstance(tb, torch.Tensor) else tb.copy()
        arrays[f"{tag}/{name}/target"] = a
        inter = session.interactions
        inter = inter.numpy() if isinstance(inter, torch.Tensor) else np.asarray(inter[...])
        arrays[f"{tag}/{name}/interactions"] = inter.astype(np.float32)
        steps.append({"step": name, "returned_bbox": ret, "fg_voxels": int(a.sum()),
                      "seconds": round(time.perf_counter() - t_step, 3)})

    def step(name, fn):
        np.random.seed(1234)  # nnInteractive's refinement planner falls back to unseeded np.random sampling
        ts = time.perf_counter()
        try:
            ret = fn()
        except Exception as e:  # recorded (and compared) rather than fatal
            ret = f"{type(e).__name__}: {e}"
        snap(name, ret, ts)

    img = synthetic_image((72, 96, 84), 1)
    shape = img.shape[1:]
    tb = np.zeros(shape, np.uint8) if tb_kind == "numpy" else torch.zeros(shape, dtype=torch.uint8)
    ts = time.perf_counter()
    session.set_image(img)
    session.set_target_buffer(tb)
    session._finish_preprocessing_and_initialize_interactions()
    arrays[f"{tag}/preprocessed_image"] = session.preprocessed_image.numpy().copy()
    steps.append({"step": "set_image", "seconds": round(time.perf_counter() - ts, 3)})

    step("point_pos", lambda: session.add_point_interaction((36, 44, 42), include_interaction=True))
    if full:
        step("point_neg", lambda: session.add_point_interaction((48, 60, 36), include_interaction=False))
    box2d = [[24, 56], [26, 70], [40, 41]] if full else [[30, 50], [36, 60], [40, 41]]  # legacy: no zoom, no refine
    step("bbox2d", lambda: session.add_bbox_interaction(box2d, include_interaction=True))
    step("bbox3d", lambda: session.add_bbox_interaction([[12, 66], [10, 88], [8, 78]], include_interaction=True))
    if not full:  # the legacy model: 3-D boxes are not in the legacy capability; reset; second image
        step("reset", lambda: session.reset_interactions())
        step("point_after_reset", lambda: session.add_point_interaction((30, 50, 40), include_interaction=True))
        step("undo", lambda: session.undo())
        return finish_with_second_image(session, step, steps, m, t)
    scribble = np.zeros(shape, np.uint8)
    scribble[40, 30:66, 38:41] = 1
    step("scribble_pos", lambda: session.add_scribble_interaction(scribble, include_interaction=True))
    lasso = np.zeros((20, 24, 1), np.uint8)
    lasso[4:16, 3:20, 0] = 1
    step("lasso_neg_bbox", lambda: session.add_lasso_interaction(
        lasso, include_interaction=False, interaction_bbox=[[20, 40], [30, 54], [50, 51]]))
    step("undo", lambda: session.undo())
    step("reset", lambda: session.reset_interactions())
    init = np.zeros(shape, np.uint8)
    init[26:50, 30:62, 28:56] = 1
    step("initial_seg_predict", lambda: session.add_initial_seg_interaction(init, run_prediction=True))
    step("point_after_init", lambda: session.add_point_interaction((5, 5, 5), include_interaction=True))
    step("initial_seg_nopredict", lambda: session.add_initial_seg_interaction(init, run_prediction=False))
    step("scribble_no_autozoom", lambda: (session.set_do_autozoom(False),
                                          session.add_scribble_interaction(scribble, include_interaction=False))[1])
    return finish_with_second_image(session, step, steps, m, t)


def finish_with_second_image(session, step, steps, m, t):
    # a second image of another size on the same session
    img2 = synthetic_image((60, 64, 56), 2)
    ts = time.perf_counter()
    session.set_image(img2)
    session.set_target_buffer(np.zeros(img2.shape[1:], np.uint8))
    session.set_do_autozoom(session.interactions_storage == "tensor")
    steps.append({"step": "set_image2", "seconds": round(time.perf_counter() - ts, 3)})
    step("img2_point", lambda: session.add_point_interaction((30, 32, 28), include_interaction=True))
    m["steps"] = steps
    m["total_s"] = round(time.perf_counter() - t, 3)


def main(models: str, out_prefix: str) -> None:
    import nnunetv2
    arrays, meta = {}, {"nnunetv2": nnunetv2.__file__, "import_s": round(IMPORT_S, 3)}
    meta["signatures"] = signatures()
    meta["search"] = search_probe()
    run_model(os.path.join(models, "modern"), "modern_tensor_numpybuf", arrays, meta, "tensor", "numpy", True)
    run_model(os.path.join(models, "legacy"), "legacy_blosc2_torchbuf", arrays, meta, "blosc2", "torch", False)
    np.savez_compressed(out_prefix + ".npz", **arrays)
    with open(out_prefix + ".json", "w") as f:
        json.dump(meta, f, indent=1, default=str)
    print("done", out_prefix)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
