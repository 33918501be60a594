"""Files the reference nnU-Net 2.8.1 wrote for find_best_configuration on make_fake_results_tree() (folds 0 1,
configurations 2d, 3d_fullres, 3d_lowres (absent), one process). <ROOT> = the tree root, <NP> = default_num_processes."""

ENSEMBLE_INFORMATION_JSON = r'''{
    "all_results": {
        "ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1": 0.814688110843446,
        "nnUNetTrainer__nnUNetPlans__2d": 0.5710602157861174,
        "nnUNetTrainer__nnUNetPlans__3d_fullres": 0.5720160509836012
    },
    "best_model_or_ensemble": {
        "postprocessing_file": "<ROOT>/nnUNet_results/Dataset999_Fake/ensembles/ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1/postprocessing.pkl",
        "result_on_crossval_post_pp": 0.9539638525567269,
        "result_on_crossval_pre_pp": 0.814688110843446,
        "selected_model_or_models": [
            {
                "configuration": "2d",
                "plans_identifier": "nnUNetPlans",
                "trainer": "nnUNetTrainer"
            },
            {
                "configuration": "3d_fullres",
                "plans_identifier": "nnUNetPlans",
                "trainer": "nnUNetTrainer"
            }
        ],
        "some_plans_file": "<ROOT>/nnUNet_results/Dataset999_Fake/ensembles/ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1/plans.json"
    },
    "considered_models": [
        {
            "configuration": "2d",
            "plans": "nnUNetPlans",
            "trainer": "nnUNetTrainer"
        },
        {
            "configuration": "3d_fullres",
            "plans": "nnUNetPlans",
            "trainer": "nnUNetTrainer"
        }
    ],
    "dataset_name_or_id": "Dataset999_Fake",
    "ensembling_allowed": true,
    "folds": [
        0,
        1
    ]
}'''

ENSEMBLE_INSTRUCTIONS_TXT = r'''***Run inference like this:***

An ensemble won! What a surprise! Run the following commands to run predictions with the ensemble members:

nnUNetv2_predict -d Dataset999_Fake -i INPUT_FOLDER -o OUTPUT_FOLDER_MODEL_1 -f  0 1 -tr nnUNetTrainer -c 2d -p nnUNetPlans --save_probabilities
nnUNetv2_predict -d Dataset999_Fake -i INPUT_FOLDER -o OUTPUT_FOLDER_MODEL_2 -f  0 1 -tr nnUNetTrainer -c 3d_fullres -p nnUNetPlans --save_probabilities

The run ensembling with:

nnUNetv2_ensemble -i OUTPUT_FOLDER_MODEL_1 OUTPUT_FOLDER_MODEL_2 -o OUTPUT_FOLDER -np 8

***Once inference is completed, run postprocessing like this:***

nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file <ROOT>/nnUNet_results/Dataset999_Fake/ensembles/ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1/postprocessing.pkl -np <NP> -plans_json <ROOT>/nnUNet_results/Dataset999_Fake/ensembles/ensemble___nnUNetTrainer__nnUNetPlans__2d___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1/plans.json
'''
