"""Console commands for sharing models: export to zip, install from zip, download and install from a URL."""
from __future__ import annotations

import argparse

from nnunetv2.errors import exit_on_user_error
from nnunetv2.utilities.console_command import import_with_ctrl_c_deferred


def print_license_warning() -> None:
    print("")
    print("######################################################")
    print("!!!!!!!!!!!!!!!!!!!!!!!!WARNING!!!!!!!!!!!!!!!!!!!!!!!")
    print("######################################################")
    print("A pretrained model is derived from the data it was trained on. Before you use it, check the licence\n"
          "of that training data (and of the model): many medical datasets allow non-commercial use only.\n"
          "You are responsible for using the model in accordance with those licences.")
    print("######################################################")
    print("")


def download_by_url_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Download a pretrained model zip from a URL and install it into nnUNet_results. Existing files "
                    "with the same names (e.g. an older version of the same model) are overwritten.")
    parser.add_argument("url", type=str, help="URL of the model zip")
    return parser


@exit_on_user_error
def download_by_url() -> None:
    args = download_by_url_parser().parse_args()
    import_with_ctrl_c_deferred('nnunetv2.model_sharing.model_download')  # Ctrl-C held back while numpy initialises
    from nnunetv2.model_sharing.model_download import download_and_install_from_url
    download_and_install_from_url(args.url)


def install_from_zip_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Install a pretrained model zip (made with nnUNetv2_export_model_to_zip) into nnUNet_results. "
                    "Members outside a DatasetXXX_Name/ folder, absolute paths, '..' and links are refused.")
    parser.add_argument("zip", type=str, help="The model zip file (made with nnUNetv2_export_model_to_zip)")
    return parser


@exit_on_user_error
def install_from_zip_entry_point() -> None:
    args = install_from_zip_entry_point_parser().parse_args()
    import_with_ctrl_c_deferred('nnunetv2.model_sharing.model_import')  # Ctrl-C held back while numpy initialises
    from nnunetv2.model_sharing.model_import import install_model_from_zip_file
    install_model_from_zip_file(args.zip)


def export_pretrained_model_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export the trained models of a dataset (checkpoints, plans, dataset.json, fingerprint, "
                    "validation summaries) to a zip that nnUNetv2_install_pretrained_model_from_zip installs.")
    parser.add_argument("-d", type=str, required=True, help="dataset name or id")
    parser.add_argument("-o", type=str, required=True, help="output zip file")
    parser.add_argument("-c", nargs="+", type=str, required=False,
                        default=("3d_lowres", "3d_fullres", "2d", "3d_cascade_fullres"),
                        help="configurations to export. Default: 3d_lowres 3d_fullres 2d 3d_cascade_fullres")
    parser.add_argument("-tr", required=False, type=str, default="nnUNetTrainer",
                        help="trainer class. Default: nnUNetTrainer")
    parser.add_argument("-p", required=False, type=str, default="nnUNetPlans",
                        help="plans identifier. Default: nnUNetPlans")
    parser.add_argument("-f", required=False, nargs="+", type=str, default=(0, 1, 2, 3, 4),
                        help="folds to export ('all' for fold_all). Default: 0 1 2 3 4")
    parser.add_argument("-chk", required=False, nargs="+", type=str, default=("checkpoint_final.pth",),
                        help="checkpoint file names to include. Default: checkpoint_final.pth")
    # The reference declares this flag with action='store_false', default=False, which makes it a no-op.
    # Here it works: missing configurations and missing/incomplete folds are skipped with a warning.
    parser.add_argument("--not_strict", action="store_true", default=False, required=False,
                        help="skip missing configurations and missing or incomplete folds (with a warning) "
                             "instead of failing")
    parser.add_argument("--exp_cv_preds", action="store_true", required=False,
                        help="also export the cross-validation predictions (validation folders)")
    return parser


@exit_on_user_error
def export_pretrained_model_entry() -> None:
    args = export_pretrained_model_entry_parser().parse_args()
    import_with_ctrl_c_deferred('nnunetv2.model_sharing.model_export')  # Ctrl-C held back while numpy initialises
    from nnunetv2.model_sharing.model_export import export_pretrained_model
    export_pretrained_model(dataset_name_or_id=args.d, output_file=args.o, configurations=args.c,
                            trainer=args.tr, plans_identifier=args.p, folds=args.f,
                            strict=not args.not_strict, save_checkpoints=args.chk,
                            export_crossval_predictions=args.exp_cv_preds)
