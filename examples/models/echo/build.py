"""Build echo.mar (a handler and the OpenAI route helper, no weights) and
echo-onnx.mar: the same handler with a one-node ONNX graph (identity) that
it runs through onnxruntime for every answer, so `compare`'s ONNX Runtime
column can be exercised on a model that costs next to nothing."""
import argparse
import pathlib
import subprocess
import tempfile

import torch

here = pathlib.Path(__file__).resolve().parent
common = here.parent / "common"


class Identity(torch.nn.Module):
    def forward(self, x):
        return x * 1.0


def export_identity(path: pathlib.Path) -> None:
    torch.onnx.export(
        Identity(),
        torch.ones(1, 2),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
    )


parser = argparse.ArgumentParser(description="build echo.mar and echo-onnx.mar")
parser.add_argument("--archiver", default="torch-model-archiver")
parser.add_argument("--export-path", required=True)
args = parser.parse_args()
archive = [
    args.archiver,
    "--version", "1.0",
    "--handler", str(here / "handler.py"),
    "--extra-files", str(common / "openai_route.py"),
    "--export-path", args.export_path,
    "--force",
]
subprocess.run(archive + ["--model-name", "echo"], check=True)
with tempfile.TemporaryDirectory() as scratch:
    graph = pathlib.Path(scratch) / "echo-onnx.onnx"
    export_identity(graph)
    subprocess.run(archive + ["--model-name", "echo-onnx", "--serialized-file", str(graph)], check=True)
