"""The same model zip installed twice at once (two shells, or a rerun while the first install runs): the second finds
the dataset folder put in place by the first between its check and its rename, and merges into it instead of failing
with ENOTEMPTY naming its hidden staging folder. Drop into tests/model_sharing/."""
import json
import os
import zipfile

import nnunetv2.model_sharing.model_import as mi
from nnunetv2.model_sharing.model_import import install_model_from_zip_file

MEMBERS = {'Dataset977_Twice/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json': json.dumps({'a': 1}),
           'Dataset977_Twice/nnUNetTrainer__nnUNetPlans__3d_fullres/dataset.json': json.dumps({'b': 2}),
           'Dataset977_Twice/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.pth': 'weights'}


def test_second_install_merges_into_the_folder_the_first_put_in_place(tmp_path, monkeypatch):
    results = tmp_path / 'results'
    monkeypatch.setenv('nnUNet_results', str(results))
    zip_path = tmp_path / 'model.zip'
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for name, text in MEMBERS.items():
            zf.writestr(name, text)

    class OsWithOtherInstall:  # the other install runs completely right before this one's first rename
        done = False

        def __getattr__(self, name):
            return getattr(os, name)

        def rename(self, s, d):
            if not self.done:
                self.done = True
                with monkeypatch.context() as m:
                    m.setattr(mi, 'os', os)
                    install_model_from_zip_file(str(zip_path))
            return os.rename(s, d)

    monkeypatch.setattr(mi, 'os', OsWithOtherInstall())
    install_model_from_zip_file(str(zip_path))  # was: OSError ENOTEMPTY '.../.nnunet_install_*/Dataset977_Twice'
    monkeypatch.setattr(mi, 'os', os)
    assert sorted(os.listdir(results)) == ['Dataset977_Twice']
    for name, text in MEMBERS.items():
        assert (results / name).read_text() == text
