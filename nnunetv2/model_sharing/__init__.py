"""Share trained models: export a results folder to a zip, install a zip (local file or URL) into nnUNet_results."""
