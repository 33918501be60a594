"""MOOSE's way of driving the predictor (moosez 3.2.2, read from its public wheel; no client code here).

MOOSE splits a large image into chunks, preprocesses them itself with ``configuration_manager.preprocessor_class``'s
``run_case_npy`` in several threads at once (dask), hands ``predict_from_data_iterator`` an iterator of dicts whose
``ofile`` is None, with stdout and stderr redirected to a log file, and takes the returned segmentations. Model: the
reference-trained 3-D golden model with two channels and regions (skipped without ../shared).
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

DS = 'Dataset902_SynthMRRegions'
CASE = 'mr_008'


@pytest.fixture(scope="module")
def predictor(golden_model_dir):
    p = nnUNetPredictor(allow_tqdm=False, device=torch.device('cpu'))
    p.initialize_from_trained_model_folder(str(golden_model_dir(DS)), use_folds=(0,))
    return p


def _image(golden_raw):
    files = [str(golden_raw(DS) / 'imagesTs' / f'{CASE}_000{c}.nii.gz') for c in (0, 1)]
    image = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(f)) for f in files]).astype(np.float32)
    return image, list(sitk.ReadImage(files[0]).GetSpacing())[::-1]


def test_chunks_preprocessed_in_threads_and_predicted_from_an_iterator(predictor, golden_raw, tmp_path):
    image, spacing = _image(golden_raw)
    half = image.shape[1] // 2
    chunks = [image[:, :half + 4], image[:, half - 4:]]
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)

    def preprocess(chunk):
        data, _, properties = preprocessor.run_case_npy(chunk, None, {'spacing': spacing}, predictor.plans_manager,
                                                        predictor.configuration_manager, predictor.dataset_json)
        return {'data': torch.from_numpy(data).contiguous(), 'data_properties': properties, 'ofile': None}

    with ThreadPoolExecutor(4) as threads:
        items = list(threads.map(preprocess, chunks * 2))
    log = tmp_path / 'nnunet.log'
    with open(log, 'w') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        segmentations = predictor.predict_from_data_iterator(iter(items))

    assert len(segmentations) == 4
    for chunk, seg, again in zip(chunks, segmentations[:2], segmentations[2:]):
        alone = predictor.predict_single_npy_array(chunk, {'spacing': spacing})
        assert seg.shape == chunk.shape[1:] and seg.dtype == alone.dtype
        assert np.array_equal(seg, alone) and np.array_equal(seg, again)  # threads did not mix the chunks
    assert len(np.unique(segmentations[0])) > 1
