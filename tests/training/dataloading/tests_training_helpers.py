"""Helpers shared by the data loading tests (imported by module name; pytest puts this folder on sys.path)."""
import numpy as np

from nnunetv2.utilities.blosc2_storage import save_case


def make_ignore_folder(tmp_path):
    """Two cases where ~70 % of the background carries the ignore label 3 (class_locations has (-1, 0, 1, 2))."""
    rs = np.random.RandomState(5)
    folder = tmp_path / 'ignore'
    folder.mkdir()
    for i in range(2):
        data, seg, props = make_case(rs, (14, 14, 14), n_channels=1, with_ignore=True)
        save_case(data, seg, props, str(folder / f'c{i}'), patch_size=(8, 8, 8))
    return folder


def make_case(rs, shape, n_channels=2, with_ignore=False):
    data = rs.randn(n_channels, *shape).astype(np.float32)
    seg = np.zeros((1, *shape), np.int16)
    x, y, z = shape
    seg[0, x // 4:x // 4 + 2, y // 4:y // 4 + 3, z // 4:z // 4 + 2] = 1  # small objects
    seg[0, -3:-1, -4:-1, -3:-1] = 2
    seg[0, 0, 0, :2] = -1  # outside the nonzero mask
    if with_ignore:
        ign = rs.rand(*shape) < 0.7
        seg[0][ign & (seg[0] == 0)] = 3
    class_locations = {c: np.argwhere(seg == c) for c in (1, 2)}
    if with_ignore:
        class_locations[(-1, 0, 1, 2)] = np.argwhere((seg != 3) & (seg >= 0))
    props = {'class_locations': class_locations, 'spacing': [1.0, 1.0, 1.0], 'shape_before_cropping': shape}
    return data, seg, props
