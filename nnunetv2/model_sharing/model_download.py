"""Download a model zip from a URL and install it."""
from __future__ import annotations

import contextlib
import logging
import os
import time
import zipfile

from tqdm import tqdm

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path
from nnunetv2.model_sharing.model_import import install_model_from_zip_file
from nnunetv2.paths import nnUNet_results

logger = logging.getLogger(__name__)


def download_file(url: str, local_filename: str, chunk_size: int = 8192 * 16) -> str:
    """Stream ``url`` to ``local_filename`` (atomically) with a progress bar; returns ``local_filename``.

    A missing ``Content-Length`` only removes the total from the progress bar. Network and HTTP errors become
    a one-line ``UserError``.
    """
    import requests  # imported here: only this command needs it

    try:
        with requests.get(url, stream=True, timeout=100) as r:
            r.raise_for_status()
            length = r.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
            with atomic_path(local_filename) as tmp, open(tmp, "wb") as f, \
                    tqdm(desc=os.path.basename(local_filename) or "download", total=total, unit="B",
                         unit_scale=True, unit_divisor=1024) as progress:
                for chunk in r.iter_content(chunk_size=chunk_size):
                    f.write(chunk)
                    progress.update(len(chunk))
    except requests.exceptions.HTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        reason = e.response.reason if e.response is not None else ""
        raise UserError(f"Download of {url} failed: HTTP {status} {reason}.".replace(" .", "."),
                        "Check the URL.") from None
    except requests.exceptions.RequestException as e:
        raise UserError(f"Download of {url} failed: {type(e).__name__}: {' '.join(str(e).split())}",
                        "Check the URL and your network connection.") from None
    return local_filename


def download_and_install_from_url(url: str) -> None:
    """Download the zip at ``url`` to a temporary file in the home folder, install it, remove the file."""
    nnUNet_results.require()
    if url.lower().startswith("file:"):  # requests has no file:// adapter: say what to do instead of 'no adapter'
        raise UserError(f"{url} is a local file: this command downloads http:// and https:// URLs only.",
                        "Install a local model zip with nnUNetv2_install_pretrained_model_from_zip PATH_TO_ZIP.")
    home = os.path.expanduser("~")
    local = os.path.join(home, f".nnunetdownload_{int(time.time() * 1e7)}")
    try:
        download_file(url, local)
        if not zipfile.is_zipfile(local):
            raise UserError(f"The file downloaded from {url} is not a zip archive.",
                            "Check the URL: it must point to a model zip made with nnUNetv2_export_model_to_zip.")
        logger.info("Download finished. Extracting...")
        install_model_from_zip_file(local)
        logger.info("Done")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(local)
