# Source this file to set nnU-Net's three data folders:   source setup_paths.sh [BASE_DIR]
# BASE_DIR defaults to ./nnUNet_data. The folders are created if missing.
_nnunet_base="${1:-$PWD/nnUNet_data}"
mkdir -p "$_nnunet_base"
_nnunet_base="$(cd "$_nnunet_base" && pwd)"
export nnUNet_raw="$_nnunet_base/nnUNet_raw"
export nnUNet_preprocessed="$_nnunet_base/nnUNet_preprocessed"
export nnUNet_results="$_nnunet_base/nnUNet_results"
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
echo "nnUNet_raw=$nnUNet_raw"
echo "nnUNet_preprocessed=$nnUNet_preprocessed"
echo "nnUNet_results=$nnUNet_results"
unset _nnunet_base
