"""Benchmark: the commands run after cross-validation, ours vs the reference (2.8.1), on the same generated data.

    python benchmarks/postprocessing_evaluation.py [--cases 10] [--shape 200 300 300] [--cases-2d 400]
        [--shape-2d 256 256] [--np default 2 1] [--commands evaluate ensemble ...] [--repeats 2]
        [--reference-python PATH] [--keep]

Covered: ``nnUNetv2_evaluate_folder``, ``nnUNetv2_evaluate_simple`` (``compute_metrics_on_folder``),
``nnUNetv2_ensemble --save_npz`` (two folders of ``.npz`` probabilities), ``nnUNetv2_determine_postprocessing``,
``nnUNetv2_apply_postprocessing``, ``nnUNetv2_accumulate_crossval_results`` and
``nnUNetv2_find_best_configuration`` (two configurations, five folds, their ensemble, postprocessing of the best).

Data (fixed seeds, generated into a temporary folder): a 3-D dataset of ``--cases`` volumes (``.nii.gz``) with 4
foreground labels (one of them made of several components in the reference segmentations), two "models" whose
predictions are the reference shapes moved and resized a little, plus blocky noise in their probabilities that adds
small spurious components (so that some postprocessing steps help and some hurt); a region-based 3-D dataset (nested
regions, evaluation and postprocessing only); a 2-D dataset of many small PNGs (evaluation and postprocessing).

``--np``: the values users pass (``default`` = no flag, i.e. the nnU-Net default of 8 processes, and e.g. 2 and 1).
Runs of the two implementations alternate (the reference first in even repeats); the fastest of ``--repeats`` is
reported, with the spread of each side. Memory: peak RSS summed over the process tree (see README: RSS counts shared
pages once per process; PSS is printed next to it). Every output file is compared: summary.json / postprocessing.json /
inference_information.json values (paths normalised), the postprocessing.pkl decision, segmentations voxel for voxel
(with their geometry) and ensemble probabilities bit for bit.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (console_script, default_reference_python, measure_tree, our_console_script,  # noqa: E402
                      reference_python)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DS3D, DSREG, DS2D = "Dataset951_PPEval3D", "Dataset952_PPEvalRegions", "Dataset953_PPEval2D"
CONFIGS = ("3d_fullres", "3d_lowres")  # model A, model B of find_best_configuration
SPACING = (0.8, 0.8, 1.5)  # x, y, z (SimpleITK order)


# ---------------------------------------------------------------------------------------------------------------
# data
def _plans(dataset: str, rw: str, configs=CONFIGS) -> dict:
    return {'dataset_name': dataset, 'plans_name': 'nnUNetPlans', 'image_reader_writer': rw,
            'label_manager': 'LabelManager', 'transpose_forward': [0, 1, 2], 'transpose_backward': [0, 1, 2],
            'original_median_spacing_after_transp': [1.5, 0.8, 0.8],
            'original_median_shape_after_transp': [1, 1, 1],
            'configurations': {c: {'data_identifier': f'nnUNetPlans_{c}', 'spacing': [1.5, 0.8, 0.8],
                                   'architecture': {
                                       'network_class_name':
                                           'dynamic_network_architectures.architectures.unet.PlainConvUNet',
                                       'arch_kwargs': {}, '_kw_requires_import': []}} for c in configs}}


def _dump(obj, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)


def _ball(arr: np.ndarray, center, radii, value: int) -> None:
    """Paint an ellipsoid (3-D) or ellipse (2-D) of ``value`` into ``arr`` (only its bounding box is touched)."""
    lo = [max(0, int(c - r) - 1) for c, r in zip(center, radii)]
    hi = [min(s, int(c + r) + 2) for c, r, s in zip(center, radii, arr.shape)]
    if any(h <= l for l, h in zip(lo, hi)):
        return
    grids = np.ogrid[tuple(slice(l, h) for l, h in zip(lo, hi))]
    d = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    view = arr[tuple(slice(l, h) for l, h in zip(lo, hi))]
    view[d <= 1] = value


def _objects(rs: np.random.RandomState, shape, n_fg: int) -> List[Tuple[tuple, tuple, int]]:
    """The reference objects of one case: (center, radii, label); label 3 has several components."""
    s = np.array(shape, float)
    objs = [(tuple(s * rs.uniform(0.4, 0.6, len(s))), tuple(s * rs.uniform(0.22, 0.3, len(s))), 1)]
    c1 = np.array(objs[0][0])
    objs.append((tuple(c1 + s * rs.uniform(-0.06, 0.06, len(s))), tuple(s * rs.uniform(0.06, 0.1, len(s))), 2))
    for _ in range(3):  # label 3: separate blobs
        objs.append((tuple(s * rs.uniform(0.12, 0.88, len(s))), tuple(s * rs.uniform(0.03, 0.05, len(s))), 3))
    for lab in range(4, n_fg + 1):
        objs.append((tuple(s * rs.uniform(0.15, 0.85, len(s))), tuple(s * rs.uniform(0.08, 0.12, len(s))), lab))
    return objs


def _paint(shape, objs, rs: Optional[np.random.RandomState] = None, jitter: float = 0.0) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    for center, radii, lab in objs:
        if rs is not None:
            center = tuple(c + rs.uniform(-jitter, jitter) * r for c, r in zip(center, radii))
            radii = tuple(r * rs.uniform(1 - jitter, 1 + jitter) for r in radii)
        _ball(seg, center, radii, lab)
    return seg


def _spurious(seg: np.ndarray, rs: np.random.RandomState, n: int, labels) -> None:
    """Small false-positive blobs of the given labels at random places."""
    for _ in range(n):
        center = tuple(rs.uniform(0, s) for s in seg.shape)
        radii = tuple(rs.uniform(1.5, 4.0) for _ in seg.shape)
        _ball(seg, center, radii, int(rs.choice(labels)))


def _probabilities_and_seg(seg: np.ndarray, n_classes: int, rs: np.random.RandomState,
                           block: int = 4, slab: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (float32, channels first) of 3*onehot(seg) + blocky noise, and their argmax (which
    differs from ``seg`` in scattered blocks: more small components)."""
    low = rs.normal(0, 0.75, (n_classes,) + tuple(-(-s // block) for s in seg.shape)).astype(np.float32)
    probs = np.empty((n_classes,) + seg.shape, np.float32)
    out_seg = np.empty(seg.shape, np.uint8)
    for z0 in range(0, seg.shape[0], slab):
        z1 = min(seg.shape[0], z0 + slab)
        sl = low[:, z0 // block:(z1 - 1) // block + 1]
        for ax in (1, 2, 3):
            sl = np.repeat(sl, block, axis=ax)
        lo = z0 - (z0 // block) * block
        logits = np.ascontiguousarray(sl[:, lo:lo + z1 - z0, :seg.shape[1], :seg.shape[2]])
        part = seg[z0:z1]
        for c in range(n_classes):
            logits[c][part == c] += 3.0
        logits -= logits.max(0, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(0, keepdims=True)
        probs[:, z0:z1] = logits
        out_seg[z0:z1] = logits.argmax(0)
    return probs, out_seg


def _sitk_write(arr: np.ndarray, path: str) -> None:
    import SimpleITK as sitk
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(SPACING)
    im.SetOrigin((10.0, -20.0, 5.0))
    sitk.WriteImage(im, path, True)


def _sitk_props(shape) -> dict:
    return {'sitk_stuff': {'spacing': SPACING, 'origin': (10.0, -20.0, 5.0),
                           'direction': (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
            'spacing': [SPACING[2], SPACING[1], SPACING[0]], 'shape_before_cropping': tuple(shape),
            'bbox_used_for_cropping': [[0, s] for s in shape], 'shape_after_cropping_and_before_resampling': tuple(shape)}


def generate_3d(base: str, n_cases: int, shape, n_fg: int = 4) -> dict:
    """Reference segmentations, predictions + probabilities of models A and B."""
    labels = {'background': 0, **{f'label{i}': i for i in range(1, n_fg + 1)}}
    dj = {'channel_names': {'0': 'CT'}, 'labels': labels, 'numTraining': n_cases, 'file_ending': '.nii.gz'}
    plans = _plans(DS3D, 'SimpleITKIO')
    paths = {'gt': os.path.join(base, 'data3d', 'gt'), 'A': os.path.join(base, 'data3d', 'predA'),
             'B': os.path.join(base, 'data3d', 'predB'), 'dataset_json': dj, 'plans': plans}
    for k in ('gt', 'A', 'B'):
        os.makedirs(paths[k])
    for k in ('A', 'B'):
        _dump(dj, os.path.join(paths[k], 'dataset.json'))
        _dump(plans, os.path.join(paths[k], 'plans.json'))
    for i in range(n_cases):
        rs = np.random.RandomState(1000 + i)
        objs = _objects(rs, shape, n_fg)
        _sitk_write(_paint(shape, objs), os.path.join(paths['gt'], f'case_{i:03d}.nii.gz'))
        for m, k in enumerate(('A', 'B')):
            rm = np.random.RandomState(10000 * (m + 1) + i)
            pred = _paint(shape, objs, rm, jitter=0.12)
            _spurious(pred, rm, 6, [1, 2, 4] if n_fg >= 4 else [1, 2])
            probs, seg = _probabilities_and_seg(pred, n_fg + 1, rm)
            del pred
            _sitk_write(seg, os.path.join(paths[k], f'case_{i:03d}.nii.gz'))
            np.savez_compressed(os.path.join(paths[k], f'case_{i:03d}.npz'), probabilities=probs)
            with open(os.path.join(paths[k], f'case_{i:03d}.pkl'), 'wb') as f:
                pickle.dump(_sitk_props(shape), f)
            del probs, seg
    return paths


def _reference_and_prediction_folders(root: str, dataset_json: dict, plans: dict) -> dict:
    """``{'gt': root/gt, 'A': root/predA}``, created, with dataset.json and plans.json in the prediction folder."""
    paths = {'gt': os.path.join(root, 'gt'), 'A': os.path.join(root, 'predA')}
    for folder in paths.values():
        os.makedirs(folder)
    _dump(dataset_json, os.path.join(paths['A'], 'dataset.json'))
    _dump(plans, os.path.join(paths['A'], 'plans.json'))
    return paths


def generate_regions(base: str, n_cases: int, shape) -> dict:
    """Nested regions (whole 1-3, core 2-3, enhancing 3), predictions with moved shapes and spurious blobs."""
    dj = {'channel_names': {'0': 'MR'}, 'labels': {'background': 0, 'whole': [1, 2, 3], 'core': [2, 3],
                                                   'enhancing': 3},
          'regions_class_order': [1, 2, 3], 'numTraining': n_cases, 'file_ending': '.nii.gz'}
    plans = _plans(DSREG, 'SimpleITKIO')
    paths = _reference_and_prediction_folders(os.path.join(base, 'dataReg'), dj, plans)
    s = np.array(shape, float)
    for i in range(n_cases):
        rs = np.random.RandomState(2000 + i)
        c = tuple(s * rs.uniform(0.4, 0.6, 3))
        objs = [(c, tuple(s * rs.uniform(0.2, 0.28, 3)), 1), (c, tuple(s * rs.uniform(0.1, 0.15, 3)), 2),
                (tuple(np.array(c) + s * 0.03), tuple(s * rs.uniform(0.03, 0.06, 3)), 3)]
        _sitk_write(_paint(shape, objs), os.path.join(paths['gt'], f'case_{i:03d}.nii.gz'))
        rm = np.random.RandomState(20000 + i)
        pred = _paint(shape, objs, rm, jitter=0.1)
        _spurious(pred, rm, 8, [1, 2, 3])
        _sitk_write(pred, os.path.join(paths['A'], f'case_{i:03d}.nii.gz'))
    return paths


def generate_2d(base: str, n_cases: int, shape) -> dict:
    from PIL import Image
    dj = {'channel_names': {'0': 'R', '1': 'G', '2': 'B'}, 'labels': {'background': 0, 'a': 1, 'b': 2},
          'numTraining': n_cases, 'file_ending': '.png'}
    plans = _plans(DS2D, 'NaturalImage2DIO', configs=('2d',))
    paths = _reference_and_prediction_folders(os.path.join(base, 'data2d'), dj, plans)
    s = np.array(shape, float)
    for i in range(n_cases):
        rs = np.random.RandomState(3000 + i)
        objs = [(tuple(s * rs.uniform(0.3, 0.7, 2)), tuple(s * rs.uniform(0.12, 0.25, 2)), 1)]
        for _ in range(2):
            objs.append((tuple(s * rs.uniform(0.1, 0.9, 2)), tuple(s * rs.uniform(0.04, 0.08, 2)), 2))
        Image.fromarray(_paint(shape, objs)).save(os.path.join(paths['gt'], f'case_{i:04d}.png'))
        rm = np.random.RandomState(30000 + i)
        pred = _paint(shape, objs, rm, jitter=0.1)
        _spurious(pred, rm, 3, [1, 2])
        Image.fromarray(pred).save(os.path.join(paths['A'], f'case_{i:04d}.png'))
    return paths


def _link_tree(src: str, dst: str, skip=()) -> None:
    """Hard-linked copy of a folder (the commands write new files; they never modify the inputs in place)."""
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        if f in skip:
            continue
        s, d = os.path.join(src, f), os.path.join(dst, f)
        if os.path.isdir(s):
            _link_tree(s, d)
        else:
            os.link(s, d)


def build_results_tree(root: str, data: dict, n_cases: int) -> Dict[str, str]:
    """nnUNet_raw / _preprocessed / _results of dataset 951 under ``root``: models A and B as two trained
    configurations with five folds of validation predictions (.nii.gz, .npz, .pkl)."""
    env = {n: os.path.join(root, n) for n in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results')}
    _link_tree(data['gt'], os.path.join(env['nnUNet_raw'], DS3D, 'labelsTr'))
    _dump(data['dataset_json'], os.path.join(env['nnUNet_raw'], DS3D, 'dataset.json'))
    _link_tree(data['gt'], os.path.join(env['nnUNet_preprocessed'], DS3D, 'gt_segmentations'))
    _dump(data['plans'], os.path.join(env['nnUNet_preprocessed'], DS3D, 'nnUNetPlans.json'))
    _dump(data['dataset_json'], os.path.join(env['nnUNet_preprocessed'], DS3D, 'dataset.json'))
    for c, k in zip(CONFIGS, ('A', 'B')):
        model = os.path.join(env['nnUNet_results'], DS3D, f'nnUNetTrainer__nnUNetPlans__{c}')
        os.makedirs(model)
        for name in ('dataset.json', 'plans.json'):
            os.link(os.path.join(data[k], name), os.path.join(model, name))
        for fold in range(5):
            val = os.path.join(model, f'fold_{fold}', 'validation')
            os.makedirs(val)
            for i in range(fold, n_cases, 5):
                for ext in ('.nii.gz', '.npz', '.pkl'):
                    os.link(os.path.join(data[k], f'case_{i:03d}{ext}'), os.path.join(val, f'case_{i:03d}{ext}'))
    return env


# ---------------------------------------------------------------------------------------------------------------
# comparison
def _json_difference(a, b, where: str = '') -> Optional[str]:
    """None if equal (NaN equals NaN, types must match), else the key path of the first difference."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f'{where} keys'
        return next((d for k in a for d in [_json_difference(a[k], b[k], f'{where}/{k}')] if d), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f'{where} length'
        return next((d for i, (x, y) in enumerate(zip(a, b)) for d in [_json_difference(x, y, f'{where}[{i}]')] if d),
                    None)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if type(a) == type(b) and a == b else f'{where}: {str(a)[-60:]!r} vs {str(b)[-60:]!r}'


def _read_json(path: str, root: str) -> object:
    with open(path) as f:
        return json.loads(f.read().replace(root, '<ROOT>'))


def _read_seg(path: str):
    if path.endswith('.png'):
        from PIL import Image
        return np.asarray(Image.open(path)), None
    import SimpleITK as sitk
    im = sitk.ReadImage(path)
    return sitk.GetArrayFromImage(im), (im.GetSpacing(), im.GetOrigin(), im.GetDirection(),
                                        sitk.GetArrayFromImage(im).dtype)


def _pp_decision(path: str):
    with open(path, 'rb') as f:
        fns, kwargs = pickle.load(f)
    return [f'{fn.__module__}.{fn.__qualname__}' for fn in fns], kwargs


def compare_folders(ours: str, ref: str, ours_root: str, ref_root: str) -> Tuple[bool, List[str]]:
    """Every file the reference wrote under ``ref`` has an equal counterpart under ``ours`` (and no extra ones)."""
    problems, n = [], 0
    ref_files = sorted(os.path.relpath(os.path.join(d, f), ref) for d, _, fs in os.walk(ref) for f in fs)
    ours_files = sorted(os.path.relpath(os.path.join(d, f), ours) for d, _, fs in os.walk(ours) for f in fs)
    def ignored(rel: str) -> bool:  # our commands' marker of a folder they wrote (.nnUNetv2_<command>.json)
        return os.path.basename(rel).startswith('.nnUNetv2_')
    for only, side in ((set(ref_files) - set(ours_files), 'reference'), (set(ours_files) - set(ref_files), 'ours')):
        only = [f for f in only if not ignored(f)]
        if only:
            problems.append(f'only {side}: {sorted(only)[:5]}')
    for rel in ref_files:
        a, b = os.path.join(ours, rel), os.path.join(ref, rel)
        if not os.path.isfile(a) or ignored(rel):
            continue
        n += 1
        if rel.endswith('.json'):
            difference = _json_difference(_read_json(a, ours_root), _read_json(b, ref_root))
            if difference:
                problems.append(f'{rel}: values differ at {difference}')
        elif rel.endswith('.nii.gz') or rel.endswith('.png'):
            (x, gx), (y, gy) = _read_seg(a), _read_seg(b)
            if x.shape != y.shape or gx != gy:
                problems.append(f'{rel}: shape/geometry differ')
            elif not np.array_equal(x, y):
                problems.append(f'{rel}: {int((x != y).sum())} voxels differ')
        elif rel.endswith('.npz'):
            with np.load(a) as fa, np.load(b) as fb:
                x, y = fa['probabilities'], fb['probabilities']
                if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                    problems.append(f'{rel}: probabilities not bit-identical')
        elif rel.endswith('postprocessing.pkl'):
            if _pp_decision(a) != _pp_decision(b):
                problems.append(f'{rel}: decision {_pp_decision(a)} vs {_pp_decision(b)}')
        elif rel.endswith('.pkl'):
            with open(a, 'rb') as fa, open(b, 'rb') as fb:
                if repr(pickle.load(fa)) != repr(pickle.load(fb)):
                    problems.append(f'{rel}: properties differ')
    return not problems, problems + [f'{n} files compared']


# ---------------------------------------------------------------------------------------------------------------
# runs
class Task:
    """One command on one data set: ``prepare(run_dir)`` -> (argv after the script name, env additions, folder with
    the outputs to compare)."""

    def __init__(self, label: str, script: str, prepare, has_np: bool = True):
        self.label, self.script, self.prepare, self.has_np = label, script, prepare, has_np


def make_tasks(data3d: dict, reg: Optional[dict], d2: Optional[dict], n_cases: int, pp_pkl: Dict[str, str]) -> \
        List[Task]:
    def evaluate(data, name):
        def prep(run):
            os.makedirs(os.path.join(run, 'out'))  # the reference does not create the folder of -o
            return ([data['gt'], data['A'], '-djfile', os.path.join(data['A'], 'dataset.json'), '-pfile',
                     os.path.join(data['A'], 'plans.json'), '-o', os.path.join(run, 'out', 'summary.json')], {},
                    os.path.join(run, 'out'))
        return Task(f'evaluate_folder {name}', 'nnUNetv2_evaluate_folder', prep)

    def evaluate_simple(run):
        os.makedirs(os.path.join(run, 'out'))
        return ([data3d['gt'], data3d['A'], '-l', '1', '2', '3', '4', '-o', os.path.join(run, 'out', 'summary.json')],
                {}, os.path.join(run, 'out'))

    def ensemble(run):
        return (['-i', data3d['A'], data3d['B'], '-o', os.path.join(run, 'out'), '--save_npz'], {},
                os.path.join(run, 'out'))

    def determine(data, name):
        def prep(run):
            folder = os.path.join(run, 'pred')
            _link_tree(data['A'], folder, skip=('summary.json',))
            return ['-i', folder, '-ref', data['gt']], {}, folder
        return Task(f'determine_postprocessing {name}', 'nnUNetv2_determine_postprocessing', prep)

    def apply(data, name, key):
        def prep(run):
            return (['-i', data['A'], '-o', os.path.join(run, 'out'), '-pp_pkl_file', pp_pkl[key], '-plans_json',
                     os.path.join(data['A'], 'plans.json')], {}, os.path.join(run, 'out'))
        return Task(f'apply_postprocessing {name}', 'nnUNetv2_apply_postprocessing', prep)

    def results_tree(run):
        return build_results_tree(os.path.join(run, 'tree'), data3d, n_cases)

    def find_best(run):
        env = results_tree(run)
        return (['951', '-c', *CONFIGS], env, os.path.join(env['nnUNet_results'], DS3D))

    def accumulate(run):
        env = results_tree(run)
        return (['951', '-c', CONFIGS[0]], env, os.path.join(env['nnUNet_results'], DS3D))

    tasks = [evaluate(data3d, '3d'), Task('evaluate_simple 3d', 'nnUNetv2_evaluate_simple', evaluate_simple),
             Task('ensemble 3d --save_npz', 'nnUNetv2_ensemble', ensemble),
             determine(data3d, '3d'), apply(data3d, '3d', '3d'),
             Task('accumulate_crossval 3d', 'nnUNetv2_accumulate_crossval_results', accumulate, has_np=False),
             Task('find_best_configuration 3d', 'nnUNetv2_find_best_configuration', find_best)]
    if reg is not None:
        tasks += [evaluate(reg, 'regions'), determine(reg, 'regions')]
    if d2 is not None:
        tasks += [evaluate(d2, '2d png'), determine(d2, '2d png'), apply(d2, '2d png', '2d')]
    return tasks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cases', type=int, default=10, help='3-D cases (and region-based cases)')
    p.add_argument('--shape', type=int, nargs=3, default=[200, 300, 300], help='3-D case shape (z y x)')
    p.add_argument('--cases-2d', type=int, default=400)
    p.add_argument('--shape-2d', type=int, nargs=2, default=[256, 256])
    p.add_argument('--np', nargs='+', default=['default', '2', '1'],
                   help="-np values; 'default' passes no -np (nnU-Net's default, 8)")
    p.add_argument('--commands', nargs='+', default=None,
                   help='substrings of the task labels to run (e.g. evaluate ensemble find_best); default all')
    p.add_argument('--skip-regions', action='store_true')
    p.add_argument('--skip-2d', action='store_true')
    p.add_argument('--repeats', type=int, default=2, help='runs of each, alternating; the fastest is reported')
    p.add_argument('--reference-python', default=default_reference_python(),
                   help='python of an env with nnunetv2==2.8.1 (default: $NNUNET_REFERENCE_PYTHON or /opt/nnunet_ref)')
    p.add_argument('--reference-venv', default=os.path.join(tempfile.gettempdir(), 'nnunet_ref_venv'))
    p.add_argument('--ours-pythonpath', default=None,
                   help='PYTHONPATH for our side only (e.g. a patched copy of the tree)')
    p.add_argument('--keep', action='store_true', help='keep the work folder')
    args = p.parse_args()

    ref_python = reference_python(args.reference_python, args.reference_venv)
    base = tempfile.mkdtemp(prefix='nnunet_bench_ppeval_')
    try:
        print(f'generating data in {base} ...', flush=True)
        data3d = generate_3d(base, args.cases, tuple(args.shape))
        reg = None if args.skip_regions else generate_regions(base, args.cases, tuple(args.shape))
        d2 = None if args.skip_2d else generate_2d(base, args.cases_2d, tuple(args.shape_2d))

        # apply_postprocessing replays one fixed decision for both: the reference's own, on the same predictions
        pp_pkl = {}
        for key, data in (('3d', data3d), ('2d', d2)):
            if data is None:
                continue
            folder = os.path.join(base, f'ppdecision_{key}')
            _link_tree(data['A'], folder)
            import subprocess
            subprocess.run([console_script(ref_python, 'nnUNetv2_determine_postprocessing'), '-i', folder, '-ref',
                            data['gt'], '-np', '2'], check=True, cwd=base, stdout=subprocess.DEVNULL)
            pp_pkl[key] = os.path.join(folder, 'postprocessing.pkl')
            print(f'  reference postprocessing decision ({key}): {_pp_decision(pp_pkl[key])}', flush=True)

        tasks = [t for t in make_tasks(data3d, reg, d2, args.cases, pp_pkl)
                 if args.commands is None or any(c in t.label for c in args.commands)]
        rows = []
        for task in tasks:
            for np_value in (args.np if task.has_np else ['default']):
                flags = [] if np_value == 'default' else ['-np', np_value]
                best: Dict[str, object] = {}
                walls: Dict[str, List[float]] = {'ours': [], 'ref': []}
                last: Dict[str, Tuple[str, str]] = {}
                for r in range(args.repeats):
                    for side in (('ref', 'ours') if r % 2 == 0 else ('ours', 'ref')):
                        run = os.path.join(base, 'runs', f'{task.label.replace(" ", "_")}_np{np_value}_{side}{r}')
                        os.makedirs(run)
                        argv, env_add, out = task.prepare(run)
                        env = dict(os.environ, **env_add)
                        for k in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results'):
                            env.setdefault(k, os.path.join(run, 'unset_' + k))
                        if side == 'ref':
                            cmd = [console_script(ref_python, task.script)]
                            cwd = base
                        else:
                            cmd = [our_console_script(task.script)]
                            cwd = REPO
                            if args.ours_pythonpath:
                                env['PYTHONPATH'] = args.ours_pythonpath
                        m = measure_tree(cmd + argv + flags, env, cwd=cwd)
                        if m.returncode != 0:
                            print(f'  {task.label} -np {np_value} {side}: exit status {m.returncode}', flush=True)
                        walls[side].append(m.wall_s)
                        if side not in best or m.wall_s < best[side].wall_s:
                            best[side] = m
                        if side in last:  # keep only the newest outputs of each side
                            shutil.rmtree(last[side][0], ignore_errors=True)
                        last[side] = (run, out)
                same, notes = compare_folders(last['ours'][1], last['ref'][1], last['ours'][0], last['ref'][0])
                rows.append((task.label, np_value, best['ours'], best['ref'], walls, same))
                o, f = best['ours'], best['ref']
                print(f'{task.label:<34} -np {np_value:<8} ours {o.wall_s:6.1f} s (runs {_spread(walls["ours"])}) '
                      f'ref {f.wall_s:6.1f} s (runs {_spread(walls["ref"])}) ratio {o.wall_s / f.wall_s:.2f}; '
                      f'RSS {o.peak_rss_mb:.0f}/{f.peak_rss_mb:.0f} MB; '
                      f'{"identical" if same else "DIFFERENT"} ({"; ".join(notes[:4])})', flush=True)
                for side in ('ours', 'ref'):
                    shutil.rmtree(last[side][0], ignore_errors=True)
        print()
        print(f"{'command':<34}{'-np':>8}{'ours s':>8}{'ref s':>8}{'ratio':>7}{'RSS ours/ref MB':>18}{'ratio':>7}"
              f"{'PSS ratio':>10}  identical")
        for label, np_value, o, f, walls, same in rows:
            print(f"{label:<34}{np_value:>8}{o.wall_s:>8.1f}{f.wall_s:>8.1f}{o.wall_s / f.wall_s:>7.2f}"
                  f"{f'{o.peak_rss_mb:.0f}/{f.peak_rss_mb:.0f}':>18}{o.peak_rss_mb / max(f.peak_rss_mb, 1):>7.2f}"
                  f"{o.peak_pss_mb / max(f.peak_pss_mb, 1):>10.2f}  {'yes' if same else 'NO'}")
        total_o, total_f = sum(r[2].wall_s for r in rows), sum(r[3].wall_s for r in rows)
        if rows:
            print(f'\ntotal wall time ratio (ours / reference): {total_o / total_f:.2f}')
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f'kept {base}')


def _spread(values: List[float]) -> str:
    return '/'.join(f'{v:.1f}' for v in values)


if __name__ == '__main__':
    main()
