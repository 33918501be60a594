"""The reference's module-level names stay reachable through our modules (clients use them), listed in one place."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nnunetv2.inference.reference_names import (EXPORT_PREDICTION, LAZY_SOURCES, NNUNET_TRAINER,
                                                PREDICT_FROM_RAW_DATA, REFERENCE_MODULE_NAMES)


@pytest.mark.parametrize("module_name", sorted(REFERENCE_MODULE_NAMES))
def test_every_reference_name_resolves(module_name):
    module = importlib.import_module(module_name)
    missing = [n for n in REFERENCE_MODULE_NAMES[module_name] if not hasattr(module, n)]
    assert missing == []


def test_the_list_has_the_reference_sizes():
    # counted in nnU-Net 2.8.1: public module-level names (the predictor's private _getDefaultValue left out)
    assert {m: len(n) for m, n in REFERENCE_MODULE_NAMES.items()} == \
        {PREDICT_FROM_RAW_DATA: 50, EXPORT_PREDICTION: 16, NNUNET_TRAINER: 84}
    for names in REFERENCE_MODULE_NAMES.values():
        assert len(set(names)) == len(names)
    for module_name, lazy in LAZY_SOURCES.items():
        assert set(lazy) <= set(REFERENCE_MODULE_NAMES[module_name])


def test_names_are_the_objects_clients_expect():
    import batchgenerators.utilities.file_and_folder_operations as bg_files
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
    import nnunetv2.inference.data_iterators as di
    import nnunetv2.inference.export_prediction as ep
    import nnunetv2.inference.predict_from_raw_data as prd
    import nnunetv2.training.dataloading.nnunet_dataset as nd
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

    assert prd.join is os.path.join is bg_files.join and prd.isfile is os.path.isfile and prd.isdir is os.path.isdir
    assert prd.MultiThreadedAugmenter is MultiThreadedAugmenter and prd.subdirs is bg_files.subdirs
    assert prd.PreprocessAdapterFromNpy is di.PreprocessAdapterFromNpy
    assert prd.preprocessing_iterator_fromfiles is di.preprocessing_iterator_fromfiles
    assert prd.recursive_fix_for_json_export is recursive_fix_for_json_export
    assert prd.recursive_find_trainer_class_by_name is recursive_find_trainer_class_by_name
    assert prd.export_prediction_from_logits is ep.export_prediction_from_logits
    assert prd.PlansManager is PlansManager is ep.PlansManager and prd.ConfigurationManager is ConfigurationManager
    assert prd.DistributedDataParallel is torch.nn.parallel.DistributedDataParallel
    assert ep.comp_blosc2_params is nd.comp_blosc2_params and ep.nnUNetDatasetBlosc2 is nd.nnUNetDatasetBlosc2
    d = {'a': np.float32(1.5), 'b': (np.int64(2),)}
    prd.recursive_fix_for_json_export(d)
    assert d == {'a': 1.5, 'b': (2,)} and type(d['a']) is float and type(d['b'][0]) is int  # as the reference
    with pytest.raises(AttributeError, match='no attribute'):
        prd.not_a_reference_name  # noqa: B018


def test_star_import_of_the_predictor_module():
    namespace = {}
    exec("from nnunetv2.inference.predict_from_raw_data import *", namespace)
    assert set(REFERENCE_MODULE_NAMES[PREDICT_FROM_RAW_DATA]) <= set(namespace)
    assert 'annotations' not in namespace


def test_importing_the_predictor_stays_light():
    """Start-up time: the lazy names must not pull the training package or torch._dynamo in on import."""
    code = ("import sys, nnunetv2.inference.predict_from_raw_data, nnunetv2.inference.export_prediction; "
            "heavy = [m for m in sys.modules if m.startswith('nnunetv2.training') or m == 'torch._dynamo']; "
            "print(heavy)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == '[]'
