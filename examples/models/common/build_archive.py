"""Build TorchServe model archives (.mar) from an example model directory.

Each example directory holds model.py (one nn.Module class), handler.py and a
build.py that calls `build()` (a model with another's input may name that
model's handler instead of holding one). Weights are a seeded random initialisation:
no download is needed or possible.

`build(name, directory, example_shape=…)` also exports the model for the
other runtimes, offline, from the same weights: `NAME-ts.mar` (TorchScript,
traced) and `NAME-onnx.mar` (ONNX, `torch.onnx.export`, served through
onnxruntime). The archive convention: `NAME.mar` is eager, `NAME-ts.mar`
TorchScript, `NAME-onnx.mar` ONNX; each registers as its file's stem and
one handler (which runs the model through `runtimes.infer`) serves all three.
"""
import argparse
import importlib.util
import pathlib
import subprocess
import sys
import tempfile

import torch


def load_model_class(model_py: pathlib.Path):
    spec = importlib.util.spec_from_file_location("example_model", model_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__
    ]
    if len(classes) != 1:
        sys.exit(f"{model_py}: expected exactly one class, found {len(classes)}")
    return classes[0]


COMMON = pathlib.Path(__file__).resolve().parent
EXTRA_FILES = ",".join(str(COMMON / f) for f in ("openai_route.py", "runtimes.py"))


def archive(args, name, version, handler, serialized, model_file=None):
    command = [
        args.archiver,
        "--model-name", name,
        "--version", version,
        "--serialized-file", str(serialized),
        "--handler", str(handler),
        "--extra-files", EXTRA_FILES,
        "--export-path", args.export_path,
        "--force",
    ]
    if model_file is not None:
        command += ["--model-file", str(model_file)]
    subprocess.run(command, check=True)


def export_runtimes(args, name, directory, model, example_shape, version, scratch):
    """NAME-ts.mar and NAME-onnx.mar from the eager model's weights."""
    example = torch.rand(*example_shape)
    traced = pathlib.Path(scratch) / f"{name}-ts.pt"
    with torch.no_grad():
        torch.jit.trace(model, example).save(str(traced))
    archive(args, f"{name}-ts", version, directory / "handler.py", traced)
    exported = pathlib.Path(scratch) / f"{name}-onnx.onnx"
    torch.onnx.export(
        model,
        example,
        str(exported),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
    )
    archive(args, f"{name}-onnx", version, directory / "handler.py", exported)


def build(name: str, directory: pathlib.Path, version: str = "1.0", example_shape=None, handler=None) -> None:
    parser = argparse.ArgumentParser(description=f"build {name}.mar")
    parser.add_argument("--archiver", default="torch-model-archiver")
    parser.add_argument("--export-path", required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_model_class(directory / "model.py")().eval()
    handler = handler or directory / "handler.py"
    with tempfile.TemporaryDirectory() as scratch:
        weights = pathlib.Path(scratch) / f"{name}.pt"
        torch.save(model.state_dict(), weights)
        archive(args, name, version, handler, weights, directory / "model.py")
        if example_shape is not None:
            export_runtimes(args, name, directory, model, example_shape, version, scratch)
