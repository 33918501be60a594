"""Install a model zip into ``nnUNet_results`` — safely, because such zips often come from strangers.

Every member is checked before anything is written: it must be a plain file or folder below a
``DatasetXXX_Name/`` folder, with a relative name without ``..`` (no absolute paths, drive letters, symlinks or
device files). The archive is extracted into a temporary folder inside nnUNet_results and then moved into
place (a whole model folder with one rename where it does not exist yet), so a crash never leaves a
half-extracted model. Existing files with the same names are replaced, other existing files are kept (like
the reference's ``extractall``); a prediction loading the model meanwhile reads it again once the install is done. Checkpoints are only copied, never unpickled.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from typing import Dict, List

from nnunetv2.errors import UserError
from nnunetv2.model_sharing.model_update import marking_model_updates
from nnunetv2.paths import nnUNet_results

logger = logging.getLogger(__name__)

_DATASET_FOLDER = re.compile(r"^Dataset\d{3,}_[^/]+$")
_DRIVE = re.compile(r"^[A-Za-z]:")
_INSTALL_TMP_PREFIX = ".nnunet_install_"
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def check_member_name(info: zipfile.ZipInfo) -> None:
    """Raise a ``UserError`` unless ``info`` is a plain file/folder that stays below a ``DatasetXXX_Name/`` folder."""
    name = info.filename

    def bad(why: str) -> UserError:
        return UserError(f"Refusing to install: archive member {name!r} {why}; nothing was extracted.",
                         "Only install model zips made with nnUNetv2_export_model_to_zip from a source you trust.")

    if not name:
        raise bad("has an empty name")
    if "\x00" in name or "\\" in name:
        raise bad("contains a backslash or NUL character")
    if name.startswith("/") or _DRIVE.match(name):
        raise bad("is an absolute path")
    parts = name.rstrip("/").split("/")
    if any(p in ("..", "") for p in parts):
        raise bad("contains '..' or an empty path component")
    if not _DATASET_FOLDER.match(parts[0]) or (len(parts) == 1 and not info.is_dir()):
        raise bad("is not inside a DatasetXXX_Name/ folder")
    mode = info.external_attr >> 16
    # No file-type bits (archives made without unix attributes, e.g. on Windows): a plain file or folder.
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file (device, fifo or socket)"
        raise bad(f"is {kind}")


def _open_zip(zip_file: str) -> zipfile.ZipFile:
    if not os.path.isfile(zip_file):
        raise UserError(f"Model archive {zip_file} does not exist or is not a file.", "Check the path.")
    try:
        return zipfile.ZipFile(zip_file)
    except zipfile.BadZipFile:
        raise UserError(f"{zip_file} is not a zip archive (or it is damaged).",
                        "Model archives are made with nnUNetv2_export_model_to_zip; download it again.") from None
    except UnicodeDecodeError:  # a member name flagged as UTF-8 that is not: zipfile fails while listing members
        raise UserError(f"{zip_file} is damaged: a member name marked as UTF-8 is not valid UTF-8; nothing was "
                        f"installed.", "Download or export the model again.") from None


def _check_archive_layout(infos: List[zipfile.ZipInfo]) -> None:
    """Every name once, and no name both a file and a folder: other unzip tools pick another of two same-named
    members than Python's (what one inspected is not what gets installed), and a file that is also a folder
    cannot be extracted at all."""
    seen, folders = set(), set()
    for info in infos:
        name = info.filename.rstrip("/")
        if name in seen:
            raise UserError(f"Refusing to install: archive member {info.filename!r} appears more than once; nothing "
                            f"was extracted.", "Export the model again (nnUNetv2_export_model_to_zip writes each "
                            "file once) or ask its author for a clean zip.")
        seen.add(name)
        parts = name.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            folders.add(name)
    for info in infos:
        name = info.filename.rstrip("/")
        if not info.is_dir() and name in folders:
            raise UserError(f"Refusing to install: archive member {info.filename!r} is a file, and other members "
                            f"need a folder of that name; nothing was extracted.",
                            "Export the model again or ask its author for a clean zip.")


def _check_extractable(zip_file: str, infos: List[zipfile.ZipInfo]) -> None:
    """Encrypted members and compression methods Python cannot read, named before anything is written."""
    for info in infos:
        if info.flag_bits & 0x1:
            raise UserError(f"{zip_file}: member {info.filename!r} is encrypted (password-protected); nothing was "
                            f"installed.", "Model zips are not encrypted: export the model again without a password.")
        if info.compress_type not in _READABLE_METHODS:
            raise UserError(f"{zip_file}: member {info.filename!r} uses compression method {info.compress_type}, "
                            f"which cannot be read here; nothing was installed.",
                            "Re-create the zip with plain deflate compression (nnUNetv2_export_model_to_zip does).")


def _check_free_space(infos: List[zipfile.ZipInfo], zip_file: str, results: str) -> None:
    """Refuse an archive whose members would not fit on the disk of nnUNet_results. The declared sizes are an upper
    bound of what is written (extraction stops at a member's declared size and then fails its CRC check), so a zip
    bomb cannot fill the disk."""
    needed = sum(i.file_size for i in infos)
    try:
        free = shutil.disk_usage(results).free
    except OSError:
        return
    if needed > free:
        raise UserError(f"{zip_file} unpacks to {needed / 2 ** 30:.3g} GiB, more than the {free / 2 ** 30:.3g} GiB "
                        f"free on the disk of nnUNet_results ({results}); nothing was installed.",
                        "Free disk space, or check the zip: a model zip that unpacks to far more than its own size "
                        "is suspicious.")


def _check_conflicts(names: List[str], results: str) -> None:
    """A file must not replace an existing folder and no existing file may stand where a folder is needed."""
    for name in names:
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts)):
            parent = os.path.join(results, *parts[:i])
            if os.path.lexists(parent) and not os.path.isdir(parent):
                raise UserError(f"Cannot install {name}: {parent} exists and is not a folder; nothing was extracted.",
                                "Move that file away and try again.")
        target = os.path.join(results, *parts)
        if not name.endswith("/") and os.path.isdir(target):
            raise UserError(f"Cannot install {name}: {target} is an existing folder; nothing was extracted.",
                            "Move that folder away and try again.")
        if name.endswith("/") and os.path.lexists(target) and not os.path.isdir(target):
            raise UserError(f"Cannot install {name}: {target} exists and is not a folder; nothing was extracted.",
                            "Move that file away and try again.")


def _move_into_place(src: str, dst: str) -> None:
    """Merge folder ``src`` into ``dst``: whole subtrees that are new are moved with one rename."""
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dst, entry)
        if not os.path.lexists(d):
            try:
                os.rename(s, d)
                continue
            except OSError as e:
                # another install of the same model (a second shell) put the folder there since the check: merge
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.isdir(s):
                    raise
        if os.path.isdir(s):
            _move_into_place(s, d)
        else:
            os.replace(s, d)


def _same_json_file(a: str, b: str) -> bool:
    """Whether two files hold the same JSON (or, where either is not JSON, the same bytes)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        da, db = fa.read(), fb.read()
    if da == db:
        return True
    try:
        return json.loads(da) == json.loads(db)
    except ValueError:
        return False


def folds_left_from_an_older_version(staged_model: str, installed_model: str) -> List[str]:
    """The ``fold_*`` folders of an installed model that an install leaves in place although the zip brings another
    plans.json or dataset.json: they were trained for other plans (or labels), and the default folds of a prediction
    would ensemble them with the zip's folds. Empty where the definition is unchanged (a zip of some folds of the
    same model, e.g. one zip per fold)."""
    def folds(folder: str) -> set:
        return {n for n in os.listdir(folder) if n.startswith("fold_") and os.path.isdir(os.path.join(folder, n))}

    changed = [n for n in ("plans.json", "dataset.json")
               if os.path.isfile(os.path.join(staged_model, n)) and os.path.isfile(os.path.join(installed_model, n))
               and not _same_json_file(os.path.join(staged_model, n), os.path.join(installed_model, n))]
    return sorted(folds(installed_model) - folds(staged_model)) if changed else []


def install_model_from_zip_file(zip_file: str) -> None:
    """Extract a model zip (members ``DatasetXXX_Name/...``) into ``nnUNet_results``."""
    results = nnUNet_results.require()
    with _open_zip(zip_file) as zf:
        infos = zf.infolist()
        if not infos:
            raise UserError(f"{zip_file} is an empty archive.", "Download or export the model again.")
        for info in infos:
            check_member_name(info)
        _check_archive_layout(infos)
        _check_extractable(zip_file, infos)
        names = [i.filename for i in infos]
        os.makedirs(results, exist_ok=True)
        _check_conflicts(names, results)
        _check_free_space(infos, zip_file, results)
        try:
            tmp = tempfile.mkdtemp(prefix=_INSTALL_TMP_PREFIX, dir=results)
        except OSError as e:  # read-only or full: name nnUNet_results, not the random name of a staging folder
            raise OSError(e.errno, e.strerror, results) from e
        try:
            for info in infos:
                try:
                    zf.extract(info, tmp)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
                    raise UserError(f"{zip_file} is damaged: cannot extract {info.filename!r} ({e}); "
                                    f"nothing was installed.", "Download or export the model again.") from None
                except OSError as e:
                    if e.errno == errno.ENAMETOOLONG:  # the staging folder's random name would be no help
                        raise UserError(f"Cannot install archive member {info.filename!r}: its name is too long for "
                                        f"this file system ({os.strerror(e.errno)}); nothing was installed.",
                                        "Ask the model's author for a zip with shorter names.") from None
                    if e.filename is None:  # a full disk reports no name: name the file being extracted
                        raise OSError(e.errno, e.strerror, os.path.join(results, info.filename)) from e
                    raise
            # a model folder that exists already gets its files one by one: loaders must see that it is changing
            # (model folders only: <dataset>/ensembles holds no model, and its listing is read as ensembles)
            updated = {os.path.join(results, *n.split("/")[:2]) for n in names
                       if n.rstrip("/").count("/") >= 2 and n.split("/")[1] != "ensembles"}
            existing = sorted(d for d in updated if os.path.isdir(d))
            left_over: Dict[str, List[str]] = {}
            for d in existing:
                staged = os.path.join(tmp, os.path.relpath(d, results))
                if os.path.isdir(staged):
                    left_over[d] = folds_left_from_an_older_version(staged, d)
            with marking_model_updates(existing, tmp):
                _move_into_place(tmp, results)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for model_dir, folds in left_over.items():
        if folds:
            logger.warning(f"nnU-Net: {model_dir} keeps {', '.join(folds)} from before this install, but the zip "
                           f"brought another plans.json or dataset.json: those folds were trained for other plans, "
                           f"and a prediction with the default folds would ensemble them with the new ones. Delete "
                           f"them, or predict with -f naming the new folds.")
    datasets = sorted({n.split("/")[0] for n in names})
    logger.info(f"Installed {sum(not i.is_dir() for i in infos)} files of {', '.join(datasets)} into {results}")
