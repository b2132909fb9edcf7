"""The human path of the active-learning loop: export a round's tasks, import the labels.

``selection_file`` (the pending selection and its digest, the contract between both
sides), ``coco`` and ``labelstudio`` (task files for the two tools, and reading their
exports), ``ingest`` (:func:`import_labels`: detect the format and validate strictly).
"""

from segloop.labeling.coco import export_coco, read_coco_labels
from segloop.labeling.ingest import ImportedLabels, detect_format, import_labels, read_png_labels
from segloop.labeling.labelstudio import (
    decode_rle,
    encode_rle,
    export_labelstudio,
    labeling_config,
    local_files_url,
    mask_to_rle,
    read_labelstudio_labels,
    rle_to_mask,
)
from segloop.labeling.pending import TO_LABEL, WHOLE_IMAGE, PendingSelection, TaskUnit
from segloop.labeling.selection_file import read_selection, selection_digest, write_selection

__all__ = [
    "TO_LABEL",
    "WHOLE_IMAGE",
    "ImportedLabels",
    "PendingSelection",
    "TaskUnit",
    "decode_rle",
    "detect_format",
    "encode_rle",
    "export_coco",
    "export_labelstudio",
    "local_files_url",
    "import_labels",
    "labeling_config",
    "mask_to_rle",
    "read_coco_labels",
    "read_labelstudio_labels",
    "read_png_labels",
    "read_selection",
    "rle_to_mask",
    "selection_digest",
    "write_selection",
]
