"""Module-level names that third-party code reaches through three of our modules, listed in one place.

Clients use more of nnU-Net than its functions and classes: TotalSegmentator installs replacement predictor methods
that call ``predict_from_raw_data.join``, ``.load_json``, ``.PreprocessAdapterFromNpy``,
``.recursive_fix_for_json_export`` and so on, and custom trainers star-import ``nnUNetTrainer``'s module and use
``np``, ``torch``, ``autocast`` ... directly. Every public module-level name the reference (nnU-Net 2.8.1) has in
these modules is listed in ``REFERENCE_MODULE_NAMES``; a test checks that each one resolves in ours.

Our modules do not need most of these names themselves. ``LAZY_SOURCES`` says where each one they do not import
lives; the module's ``__getattr__`` imports it on first use (``lazy_attribute``), which keeps importing the
predictor cheap (no training package, no ``torch._dynamo``).

``ClientReplaceable``: clients replace some functions (the two export functions, the trainer lookup) in the
predictor module's namespace, where the reference looks them up when it calls them, and others replace them in
their home module; the predictor resolves them at call time so that either replacement takes effect.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, Tuple

PREDICT_FROM_RAW_DATA = 'nnunetv2.inference.predict_from_raw_data'
EXPORT_PREDICTION = 'nnunetv2.inference.export_prediction'
NNUNET_TRAINER = 'nnunetv2.training.nnUNetTrainer.nnUNetTrainer'

REFERENCE_MODULE_NAMES: Dict[str, Tuple[str, ...]] = {
    PREDICT_FROM_RAW_DATA: tuple("""
        ConfigurationManager DistributedDataParallel List MultiThreadedAugmenter OptimizedModule Optional
        PlansManager PreprocessAdapterFromNpy Queue Thread Tuple Union check_workers_alive_and_busy compute_gaussian
        compute_steps_for_sliding_window convert_labelmap_to_one_hot
        convert_predicted_logits_to_segmentation_with_correct_shape create_lists_from_splitted_dataset_folder
        deepcopy default_num_processes determine_num_input_channels dummy_context empty_cache
        export_prediction_from_logits get_output_folder inspect isdir isfile itertools join load_json maybe_mkdir_p
        multiprocessing nn nnUNetPredictor np os pad_nd_image predict_entry_point predict_entry_point_modelfolder
        preprocessing_iterator_fromfiles preprocessing_iterator_fromnpy recursive_find_trainer_class_by_name
        recursive_fix_for_json_export save_json sleep subdirs torch tqdm warnings""".split()),
    EXPORT_PREDICTION: tuple("""
        ConfigurationManager LabelManager List PlansManager Union comp_blosc2_params
        convert_predicted_logits_to_segmentation_with_correct_shape default_num_processes
        export_prediction_from_logits insert_crop_into_image load_json nnUNetDatasetBlosc2 np resample_and_save
        save_pickle torch""".split()),
    NNUNET_TRAINER: tuple("""
        ANISO_THRESHOLD ApplyRandomBinaryOperatorTransform BGContrast BasicTransform ComposeTransforms
        ConfigurationManager ContrastTransform Convert2DTo3DTransform Convert3DTo2DTransform
        ConvertSegmentationToRegionsTransform DC_and_BCE_loss DC_and_CE_loss DDP DeepSupervisionWrapper
        DownsampleSegForDSTransform GammaTransform GaussianBlurTransform GaussianNoiseTransform GradScaler List
        MaskImageTransform MemoryEfficientSoftDiceLoss MetaLogger MirrorTransform MoveSegAsOneHotToDataTransform
        MultiThreadedAugmenter MultiplicativeBrightnessTransform NonDetMultiThreadedAugmenter OptimizedModule
        PlansManager PolyLRScheduler RandomScalar RandomTransform RemoveLabelTansform
        RemoveRandomConnectedComponentFromOneHotEncodingTransform SimulateLowResolutionTransform
        SingleThreadedAugmenter SpatialTransform TORCH_HAS_OLD_GRADSCALER Tuple Union autocast
        check_workers_alive_and_busy collate_outputs compute_gaussian compute_metrics_on_folder
        convert_labelmap_to_one_hot datetime deepcopy default_num_processes determine_num_input_channels
        device_count dist dummy_context empty_cache export_prediction_from_logits generate_crossval_split
        get_allowed_n_proc_DA get_network_from_plans get_patch_size get_tp_fp_fn_tn infer_dataset_class inspect
        isfile join load_json maybe_mkdir_p multiprocessing nn nnUNetDataLoader nnUNetPredictor nnUNetTrainer
        nnUNet_preprocessed nnUNet_results np os resample_and_save save_json shutil sleep sys time torch
        warnings""".split()),
}

_PLANS = 'nnunetv2.utilities.plans_handling.plans_handler'
_LABELS = 'nnunetv2.utilities.label_handling.label_handling'

# name -> 'module:attribute' ('module' alone: the module itself), for the names a module does not import itself
LAZY_SOURCES: Dict[str, Dict[str, str]] = {
    PREDICT_FROM_RAW_DATA: {
        'ConfigurationManager': f'{_PLANS}:ConfigurationManager',
        'PlansManager': f'{_PLANS}:PlansManager',
        'DistributedDataParallel': 'torch.nn.parallel:DistributedDataParallel',
        'OptimizedModule': 'torch._dynamo:OptimizedModule',
        'MultiThreadedAugmenter': 'batchgenerators.dataloading.multi_threaded_augmenter:MultiThreadedAugmenter',
        'PreprocessAdapterFromNpy': 'nnunetv2.inference.data_iterators:PreprocessAdapterFromNpy',
        'preprocessing_iterator_fromfiles': 'nnunetv2.inference.data_iterators:preprocessing_iterator_fromfiles',
        'preprocessing_iterator_fromnpy': 'nnunetv2.inference.data_iterators:preprocessing_iterator_fromnpy',
        'compute_steps_for_sliding_window':
            'nnunetv2.inference.sliding_window_prediction:compute_steps_for_sliding_window',
        'convert_labelmap_to_one_hot': f'{_LABELS}:convert_labelmap_to_one_hot',
        'determine_num_input_channels': f'{_LABELS}:determine_num_input_channels',
        'create_lists_from_splitted_dataset_folder':
            'nnunetv2.utilities.utils:create_lists_from_splitted_dataset_folder',
        'get_output_folder': 'nnunetv2.utilities.file_path_utilities:get_output_folder',
        'recursive_fix_for_json_export': 'nnunetv2.utilities.json_export:recursive_fix_for_json_export',
        'pad_nd_image': 'acvl_utils.cropping_and_padding.padding:pad_nd_image',
        'load_json': 'nnunetv2.file_io:load_json',
        'subdirs': 'batchgenerators.utilities.file_and_folder_operations:subdirs',
        'join': 'os.path:join', 'isfile': 'os.path:isfile', 'isdir': 'os.path:isdir',
        'Queue': 'queue:Queue', 'Thread': 'threading:Thread', 'deepcopy': 'copy:deepcopy',
        'inspect': 'inspect', 'itertools': 'itertools', 'warnings': 'warnings',
    },
    EXPORT_PREDICTION: {
        'ConfigurationManager': f'{_PLANS}:ConfigurationManager',
        'PlansManager': f'{_PLANS}:PlansManager',
        'LabelManager': f'{_LABELS}:LabelManager',
        'comp_blosc2_params': 'nnunetv2.utilities.blosc2_storage:comp_blosc2_params',
        'nnUNetDatasetBlosc2': 'nnunetv2.training.dataloading.nnunet_dataset:nnUNetDatasetBlosc2',
        'insert_crop_into_image': 'acvl_utils.cropping_and_padding.bounding_boxes:insert_crop_into_image',
    },
}


def lazy_attribute(module_name: str, name: str):
    """``name`` for ``module_name``'s ``__getattr__``: imported from where it lives (not cached, so that a client
    replacing it in its home module is seen here too)."""
    source = LAZY_SOURCES.get(module_name, {}).get(name)
    if source is None:
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
    module, _, attribute = source.partition(':')
    imported = importlib.import_module(module)
    return getattr(imported, attribute) if attribute else imported


def star_names(module_name: str, namespace: dict) -> list:
    """``__all__`` for a module with lazy names: its public names plus the lazy ones (a star import, as with the
    reference, then provides every name; it imports the lazy ones)."""
    public = {n for n in namespace if not n.startswith('_') and n != 'annotations'}  # not the __future__ flag
    return sorted(public | set(LAZY_SOURCES.get(module_name, {})))


class ClientReplaceable(object):
    """Resolve, when called, functions a module imported from their home modules and clients may replace in either.

    A replacement in the importing module's namespace wins (the reference calls these through that namespace);
    otherwise the home module's current function is used.
    """

    def __init__(self, namespace: dict, homes: Dict[str, ModuleType]):
        self._namespace = namespace
        self._homes = homes
        self._as_imported = {name: namespace[name] for name in homes}

    def __call__(self, name: str):
        here = self._namespace[name]
        return getattr(self._homes[name], name) if here is self._as_imported[name] else here
