"""Error codes raised in core/train, with their neutral words (see core.errors)."""

from __future__ import annotations

from ..errors import Message

MESSAGES: dict[str, Message] = {
    # options (train/options) that are missing
    "export_out_dir_missing": Message("no output folder given"),
    "export_labels_missing": Message(
        "no known water given", "set {option} to a vector file, a mask raster or 'water-index'"
    ),
    "pairs_folder_missing": Message("no {option} folder given"),
    "finetune_option_missing": Message("finetune needs {option}"),
    "evaluate_option_missing": Message("no {what} given"),
    # export: the labels (train/export/labels)
    "labels_not_found": Message(
        "{path}: label file not found", "give a vector file, a mask raster or '{water_index}'"
    ),
    "labels_no_crs": Message("{path}: water labels have no CRS"),
    "labels_mask_no_crs": Message("{path}: label mask has no CRS"),
    "labels_not_polygons": Message(
        "{path}: label layer holds no polygons ({kinds})", "water labels must be areas"
    ),
    "labels_invalid": Message(
        "{path}: {count} invalid label polygon(s), the first: {reason}",
        "fix them (QGIS: Fix geometries) or leave out {opt_strict_labels} to repair them with make_valid",
    ),
    "export_labels_elsewhere": Message(
        "{path}: labels do not overlap the raster {raster} (after reprojection to the raster's CRS)"
    ),
    # export folders (train/export/outputs); finetune's model folder
    "export_write_failed": Message("{path}: cannot write {what} ({reason})"),
    "export_dir_is_file": Message("{path} exists and is not a folder"),
    "train_folder_not_empty": Message("{path} exists and is not empty", "use {opt_overwrite} to replace it"),
    "not_an_export": Message(
        "{path} is not empty and does not look like an export folder; refusing to replace it"
    ),
    # export-pairs
    "pairs_folder_not_found": Message("{path}: {option} folder not found"),
    "pairs_names_not_found": Message("{path}: names file not found"),
    "pairs_unmatched": Message(
        "{count} listed image(s) lack an image in {images} or a mask in {masks} with the same name, e.g. {example}"
    ),
    "pairs_no_images": Message("{path}: no images found"),
    "pairs_sizes_differ": Message("{path}: image is {size} but its mask {mask} is {mask_size}"),
    "pairs_sizes_differ_read": Message("{path}: image is {size} but its mask is {mask_size}"),
    "pairs_name_repeated": Message("{path}: {name} is listed more than once"),
    "pairs_same_chip": Message(
        "{first} and {second} would both be written as images/{chip}",
        "rename one of them or leave one out ({opt_names})",
    ),
    # finetune
    "finetune_data_not_found": Message("{path}: training data folder not found"),
    "finetune_no_examples": Message("{path}: no training examples"),
    "finetune_image_missing": Message("{path}: line {line}: image {image} not found in {folder}"),
    "finetune_diverged": Message(
        "training diverged at step {step} (loss {loss})", "lower the learning rate ({option})"
    ),
    "finetune_out_is_file": Message("{path} is a file, not a model folder; refusing to replace it"),
    "finetune_not_a_model": Message("{path} is not a model folder; refusing to replace it"),
    # evaluate
    "evaluate_not_found": Message("{path}: {what} not found"),
    "evaluate_output_keys": Message("{path}: line for {image} has none of the keys {keys}"),
    "evaluate_images_not_found": Message(
        "{path}: images folder not found (needed for the sizes of truth JSONL pairs)"
    ),
    "evaluate_pairs_truth": Message("{path}: truth must be a folder of masks or a JSONL with 'suffix'"),
    "evaluate_no_crs": Message("{path}: {what} has no CRS"),
    "evaluate_nodata_range": Message(
        "{path}: nodata value {value} cannot occur in this {dtype} {what} (values {low} to {high})",
        "check {option}",
    ),
    "evaluate_nodata_vectors": Message("{path}: {option} applies to a truth mask raster, not to vectors"),
    "evaluate_layer_missing": Message("{path}: no layer {layer} (layers: {layers})"),
    "evaluate_needs_grid": Message("{path}: a vector truth needs a reference grid", "pass one with {option}"),
    "evaluate_chips_outside": Message("{path}: no chip of the prediction overlaps the reference grid {grid}"),
    "evaluate_prediction_outside": Message(
        "{path}: the predicted water lies outside the reference grid {grid}"
    ),
    "evaluate_truth_outside": Message("{path}: the truth polygons lie outside the reference grid {grid}"),
    "evaluate_no_overlap": Message(
        "{path}: no pixel has data in both the prediction and the truth {truth} "
        "({truth_nodata} truth nodata, {pred_nodata} prediction nodata pixels)",
        "do they cover the same place?",
    ),
}
