"""Helpers shared by the data loading tests (imported by module name; pytest puts this folder on sys.path)."""
import numpy as np

from nnunetv2.utilities.blosc2_storage import save_case


def make_ignore_folder(tmp_path):
    """Two cases where ~70 % of the background carries the ignore label 3 (class_locations has (-1, 0, 1, 2))."""
    from conftest import make_case
    rs = np.random.RandomState(5)
    folder = tmp_path / 'ignore'
    folder.mkdir()
    for i in range(2):
        data, seg, props = make_case(rs, (14, 14, 14), n_channels=1, with_ignore=True)
        save_case(data, seg, props, str(folder / f'c{i}'), patch_size=(8, 8, 8))
    return folder
