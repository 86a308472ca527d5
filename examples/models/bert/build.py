"""Build bert.mar and bert-onnx.mar (see ../common/text_archive.py).

The ONNX export holds BERT-base with the weights a worker of bert.mar
initialises (seed 0): input_ids and attention_mask in, last_hidden_state out.
"""
import pathlib
import sys

import torch

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "common"))

from text_archive import build  # noqa: E402


def export_onnx(path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig()).eval()
    ids = torch.ones(1, 8, dtype=torch.int64)
    mask = torch.ones(1, 8, dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        model,
        (ids, {"attention_mask": mask}),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
        opset_version=17,
    )


build("bert", here, "word-piece", onnx_export=export_onnx)
