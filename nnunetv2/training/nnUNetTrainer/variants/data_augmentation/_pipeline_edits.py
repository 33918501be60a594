"""Small edits of an already built augmentation pipeline, for variants that change one knob of the default one."""
from typing import Iterator

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.nnunet.random_binary_operator import ApplyRandomBinaryOperatorTransform
from batchgeneratorsv2.transforms.nnunet.remove_connected_components import \
    RemoveRandomConnectedComponentFromOneHotEncodingTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform


def iter_transforms(transform: BasicTransform) -> Iterator[BasicTransform]:
    """Every transform in a pipeline, looking into ComposeTransforms / RandomTransform / OneOfTransform."""
    yield transform
    for attr in ("transforms", "list_of_transforms"):
        for t in getattr(transform, attr, None) or []:
            yield from iter_transforms(t)
    inner = getattr(transform, "transform", None)
    if isinstance(inner, BasicTransform):
        yield from iter_transforms(inner)


def set_spatial_interpolation(pipeline: BasicTransform, mode_seg: str = None, mode_image: str = None):
    for t in iter_transforms(pipeline):
        if isinstance(t, SpatialTransform):
            if mode_seg is not None:
                t.mode_seg = mode_seg
            if mode_image is not None:
                t.mode_image = mode_image
    return pipeline


def set_cascade_p_per_label(pipeline: BasicTransform, p: float):
    for t in iter_transforms(pipeline):
        if isinstance(t, (ApplyRandomBinaryOperatorTransform,
                          RemoveRandomConnectedComponentFromOneHotEncodingTransform)):
            t.p_per_label = p
    return pipeline
