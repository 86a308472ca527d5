"""Run a model the same way whatever runtime its archive was exported for.

An example model ships in up to three archives (see build_archive.py):
`NAME.mar` (eager: model.py and a state dict), `NAME-ts.mar` (TorchScript:
a traced `.pt`) and `NAME-onnx.mar` (an `.onnx` file, which TorchServe's
base handler opens as an onnxruntime session when onnxruntime is
installed). The handler calls `infer` instead of `self.model(...)`: an
onnxruntime session is run with numpy arrays, the others are called.
Shipped inside each archive as an extra file.
"""
import os

import torch


def is_onnx_session(model) -> bool:
    return hasattr(model, "run") and hasattr(model, "get_inputs")


def prepare(handler) -> None:
    """After BaseHandler.initialize: an onnxruntime session is opened again
    with OMP_NUM_THREADS intra-op threads when that is set (the base handler
    gives it one per logical CPU, however many workers share them)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if not is_onnx_session(handler.model) or not threads.isdigit():
        return
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    handler.model = onnxruntime.InferenceSession(
        handler.model_pt_path, sess_options=options, providers=handler.model.get_providers()
    )


def infer(model, batch: torch.Tensor) -> torch.Tensor:
    if is_onnx_session(model):
        name = model.get_inputs()[0].name
        (output,) = model.run(None, {name: batch.cpu().numpy()})
        return torch.from_numpy(output)
    with torch.inference_mode():
        return model(batch)
