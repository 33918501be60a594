"""Outputs written by the reference for the synthetic postprocessing case of test_postprocessing.py."""
# Produced once with the reference nnU-Net 2.8.1 (determine_postprocessing on make_case_folders() data,
# label-based dataset.json). Only its output is kept here.
REFERENCE_PKL_B64 = (
    'gASVGAEAAAAAAABdlCiMM25udW5ldHYyLnBvc3Rwcm9jZXNzaW5nLnJlbW92ZV9jb25uZWN0ZWRfY29tcG9uZW50c5SMMnJlbW92'
    'ZV9hbGxfYnV0X2xhcmdlc3RfY29tcG9uZW50X2Zyb21fc2VnbWVudGF0aW9ulJOUaANlXZQofZSMEWxhYmVsc19vcl9yZWdpb25z'
    'lF2UKIwWbnVtcHkuX2NvcmUubXVsdGlhcnJheZSMBnNjYWxhcpSTlIwFbnVtcHmUjAVkdHlwZZSTlIwCaTiUiYiHlFKUKEsDjAE8'
    'lE5OTkr/////Sv////9LAHSUYkMIAQAAAAAAAACUhpRSlGgKaBBDCAIAAAAAAAAAlIaUUpRlc32UaAZoGHNlhpQu'
)

REFERENCE_POSTPROCESSING_JSON = r'''{
    "input_folder": {
        "foreground_mean": {
            "Dice": 0.9762359170104045,
            "FN": 0.5,
            "FP": 8.0,
            "IoU": 0.9535949248120301,
            "TN": 7812.0,
            "TP": 179.5,
            "n_pred": 187.5,
            "n_ref": 180.0
        },
        "mean": {
            "1": {
                "Dice": 0.979498861047836,
                "FN": 1.0,
                "FP": 8.0,
                "IoU": 0.9598214285714286,
                "TN": 7776.0,
                "TP": 215.0,
                "n_pred": 223.0,
                "n_ref": 216.0
            },
            "2": {
                "Dice": 0.972972972972973,
                "FN": 0.0,
                "FP": 8.0,
                "IoU": 0.9473684210526315,
                "TN": 7848.0,
                "TP": 144.0,
                "n_pred": 152.0,
                "n_ref": 144.0
            }
        }
    },
    "postprocessed": {
        "foreground_mean": {
            "Dice": 0.9988399071925754,
            "FN": 0.5,
            "FP": 0.0,
            "IoU": 0.9976851851851851,
            "TN": 7820.0,
            "TP": 179.5,
            "n_pred": 179.5,
            "n_ref": 180.0
        },
        "mean": {
            "1": {
                "Dice": 0.9976798143851509,
                "FN": 1.0,
                "FP": 0.0,
                "IoU": 0.9953703703703703,
                "TN": 7784.0,
                "TP": 215.0,
                "n_pred": 215.0,
                "n_ref": 216.0
            },
            "2": {
                "Dice": 1.0,
                "FN": 0.0,
                "FP": 0.0,
                "IoU": 1.0,
                "TN": 7856.0,
                "TP": 144.0,
                "n_pred": 144.0,
                "n_ref": 144.0
            }
        }
    },
    "postprocessing_fns": [
        "remove_all_but_largest_component_from_segmentation",
        "remove_all_but_largest_component_from_segmentation"
    ],
    "postprocessing_kwargs": [
        {
            "labels_or_regions": [
                1,
                2
            ]
        },
        {
            "labels_or_regions": 2
        }
    ]
}'''
