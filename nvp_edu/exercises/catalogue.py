"""What kind of thinking each checked exercise of the notebooks asks for.

An instructor choosing exercises, and the course's own test of its balance, read this table.
Each item a notebook checks (``check("name", fn)``, ``answer("name", value)`` or a topic
module's ``check_...``) has one kind:

- ``retype``: write as code a formula or a function the notebook showed above;
- ``implement``: write a standard formula or operation the notebook did not show;
- ``derive``: work out a formula the notebook did not state (an inverse, a log-det), then code it;
- ``predict``: give a number or an outcome before any output shows it, then check or measure;
- ``diagnose``: find what is wrong in code or in a reported number;
- ``explain``: pick the explanation of a measured result or of a design choice;
- ``design``: build a new variant (a mask) and test a claim about it.

The course keeps re-typing to at most a quarter of all items (issue 21);
``tests/test_notebook_text.py`` checks the table against the notebooks and that share.

Example:
    >>> from nvp_edu.exercises.catalogue import KINDS, share
    >>> KINDS["stripes_mask"]
    'design'
    >>> share("retype") <= 0.25
    True
"""
from __future__ import annotations

KIND_NAMES = ("retype", "implement", "derive", "predict", "diagnose", "explain", "design")

# notebook -> {exercise name: kind}, in the order the notebook asks them
BY_NOTEBOOK: dict[str, dict[str, str]] = {
    "01_change_of_variables": {
        "affine_1d_log_det": "retype", "linear_2d_log_det": "implement",
        "lognormal_log_prob": "derive", "density_of_3x_at_0": "predict",
        "sinh_flow_which_check": "diagnose", "sinh_log_det": "derive",
    },
    "02_toy_flows": {
        "standardized_log_prob": "retype", "mixture_log_prob": "implement",
        "affine_coupling_2d": "retype", "untrained_nll": "predict",
        "forgotten_log_det": "predict", "coupling_fix": "diagnose", "leak_bound": "derive",
        "leak_term": "explain", "rotation_where": "predict",
    },
    "03_affine_coupling": {
        "coupling_bug_log_det_which_check": "diagnose", "coupling_forward_and_log_det": "retype",
        "coupling_bug_inverse_which_check": "diagnose", "coupling_inverse": "retype",
        "coupling_predict_log_det": "predict", "coupling_why_nonfinite": "explain",
    },
    "04_masks": {
        "checkerboard_mask": "retype", "same_mask_twice_copies": "predict",
        "why_checkerboard_wins": "explain", "stripes_kept_neighbours": "predict",
        "stripes_mask": "design", "stripes_where": "predict",
    },
    "05_squeeze": {
        "unsqueeze": "derive", "squeeze_track_pixel": "predict", "middle_channel_kept": "predict",
    },
    "06_images_as_data": {
        "nll_to_bits_per_dim": "retype", "logit_log_det_near_zero": "predict",
        "uniform_half_cube_bits_per_dim": "predict", "forgot_logit_log_det": "diagnose",
    },
    "07_multiscale": {
        "squeeze_and_factor_out": "retype", "final_scale_numbers_64x64": "predict",
        "numbers_per_scale": "derive", "multiscale_log_prob": "retype",
        "ema_steps_to_forget_the_start": "predict",
    },
    "08_batchnorm": {
        "batchnorm_log_det": "retype", "running_average_start_weight": "predict",
        "forgotten_weight": "derive", "train_mode_single_image": "explain",
    },
    "09_cifar10": {
        "cifar_bits_per_dim": "diagnose", "cifar_hflip": "implement",
        "bf16_spacing_near_7000": "predict", "why_float32_log_dets_are_cheap": "explain",
        "fp16_sum_of_a_batch": "predict", "why_fp16_needs_a_gradient_scaler": "explain",
    },
    "10_after_real_nvp": {
        "invconv_log_det": "retype", "importance_weighted_nll": "implement",
        "constant_image_bpd": "predict",
    },
}

KINDS: dict[str, str] = {name: kind for items in BY_NOTEBOOK.values() for name, kind in items.items()}


def share(kind: str) -> float:
    """The fraction of all checked items that are of ``kind`` (one of :data:`KIND_NAMES`)."""
    if kind not in KIND_NAMES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KIND_NAMES)}")
    return sum(k == kind for k in KINDS.values()) / len(KINDS)
