"""The default 5-fold cross-validation split (written to splits_final.json by the trainer)."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from nnunetv2.errors import UserError


def generate_crossval_split(train_identifiers: Sequence, seed: int = 12345, n_splits: int = 5) -> List[dict]:
    """``[{'train': [...], 'val': [...]}, ...]`` from scikit-learn's ``KFold(n_splits, shuffle=True, seed)``.

    Elements keep the type they get in a numpy array (``numpy.str_`` for strings), like the reference.
    """
    identifiers = np.array(train_identifiers)
    if len(identifiers) < n_splits:
        raise UserError(f"Cannot make a {n_splits}-fold cross-validation split from only {len(identifiers)} training "
                        f"case(s): every fold needs at least one validation case.",
                        "Train on all cases with fold 'all', add cases, or provide your own splits_final.json in "
                        "the preprocessed dataset folder.")
    from sklearn.model_selection import KFold  # imported on use: scikit-learn takes about a second to import

    kfold = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [{"train": list(identifiers[tr]), "val": list(identifiers[va])}
            for tr, va in kfold.split(identifiers)]
