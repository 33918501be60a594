"""Channel name (from dataset.json) -> normalisation scheme class."""
from __future__ import annotations

from typing import Type

from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
    CTNormalization, ImageNormalization, NoNormalization, RescaleTo01Normalization, RGBTo01Normalization,
    ZScoreNormalization)

channel_name_to_normalization_mapping = {
    'ct': CTNormalization,
    'nonorm': NoNormalization,
    'zscore': ZScoreNormalization,
    'rescale_to_0_1': RescaleTo01Normalization,
    'rgb_to_0_1': RGBTo01Normalization,
}


def get_normalization_scheme(channel_name: str) -> Type[ImageNormalization]:
    """Case-insensitive lookup; any unknown name (e.g. 'T2', 'MRI') means z-score normalisation."""
    return channel_name_to_normalization_mapping.get(str(channel_name).casefold(), ZScoreNormalization)
