"""fix_3: evaluation reads through a patched SimpleITKIO.read_images, as read_seg does."""
import numpy as np
import SimpleITK as sitk
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.evaluation.evaluate_predictions import compute_metrics


def test_patched_read_images_is_used(tmp_path, monkeypatch):
    f = str(tmp_path / 'a.nii.gz')
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 3, 4), np.uint8)), f)
    orig = SimpleITKIO.read_images
    def patched(self, fnames):
        a, p = orig(self, fnames)
        a[a == 1] = 2
        return a, p
    monkeypatch.setattr(SimpleITKIO, 'read_images', patched)
    assert compute_metrics(f, f, SimpleITKIO(), [2])['metrics'][2]['n_ref'] == 24
