"""The default 5-fold cross-validation split (written to splits_final.json by the trainer)."""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

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


def splits_problem(splits, known_identifiers: Optional[Iterable[str]] = None) -> Optional[str]:
    """What is wrong with a splits_final.json's content (structure, or case ids that the preprocessed dataset does
    not have), or None. The structure is a list with one {'train': [ids], 'val': [ids]} object per fold."""
    if not isinstance(splits, list) or not splits:
        return (f"must be a non-empty list of folds [{{\"train\": [...], \"val\": [...]}}, ...], not a "
                f"{type(splits).__name__}")
    for fold, split in enumerate(splits):
        if not isinstance(split, dict):
            return f"fold {fold} must be an object {{\"train\": [...], \"val\": [...]}}, not a {type(split).__name__}"
        for key in ('train', 'val'):
            if key not in split:
                return f"fold {fold} lacks the key '{key}' (it has {sorted(split)})"
            if not isinstance(split[key], list) or not all(isinstance(i, str) for i in split[key]):
                return f"fold {fold}: '{key}' must be a list of case identifiers (strings)"
    if known_identifiers is not None:
        known = set(known_identifiers)
        for fold, split in enumerate(splits):
            unknown = sorted({i for key in ('train', 'val') for i in split[key]} - known)
            if unknown:
                shown = ', '.join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                return f"fold {fold} names case(s) that the preprocessed dataset does not have: {shown}"
    return None


def check_splits(splits, splits_file: str, known_identifiers: Optional[Iterable[str]] = None) -> None:
    """UserError naming the splits file and its problem (see ``splits_problem``)."""
    problem = splits_problem(splits, known_identifiers)
    if problem is not None:
        raise UserError(f"{splits_file}: {problem}.",
                        "Fix the file (case identifiers are the file names without _0000 and ending), or delete it "
                        "to get the default 5-fold split.")


def check_fold_has_cases(train_keys: Optional[Sequence], val_keys: Optional[Sequence], fold: int, source: str) -> None:
    """UserError when the fold to train has no training or no validation cases (an empty list in a hand-written
    splits_final.json, or an 80:20 split of too few cases): the data loader cannot draw a batch from nothing. A list
    given as None is not judged (a validation-only run, nnUNetv2_train --val, needs no training cases)."""
    empty = [what for what, keys in (("training", train_keys), ("validation", val_keys))
             if keys is not None and len(keys) == 0]
    if empty:
        raise UserError(f"Fold {fold} has no {' and no '.join(empty)} cases ({source}): every fold needs at least one "
                        f"training and one validation case.",
                        "Put cases into the empty list of that fold, or train with fold 'all' (all cases for "
                        "training and validation).")


def cases_in_no_fold(splits: List[dict], identifiers: Iterable[str]) -> List[str]:
    """The identifiers (sorted) that no fold of ``splits`` trains or validates on: typically cases added to the
    dataset after splits_final.json was made, which that split never uses (nor does the reference, without a word)."""
    used = {i for split in splits for key in ('train', 'val') for i in split[key]}
    return sorted(set(identifiers) - used)
