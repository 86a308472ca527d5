"""Build echo.mar: a handler and the OpenAI route helper, no weights."""
import argparse
import pathlib
import subprocess

here = pathlib.Path(__file__).resolve().parent
common = here.parent / "common"

parser = argparse.ArgumentParser(description="build echo.mar")
parser.add_argument("--archiver", default="torch-model-archiver")
parser.add_argument("--export-path", required=True)
args = parser.parse_args()
subprocess.run(
    [
        args.archiver,
        "--model-name", "echo",
        "--version", "1.0",
        "--handler", str(here / "handler.py"),
        "--extra-files", str(common / "openai_route.py"),
        "--export-path", args.export_path,
        "--force",
    ],
    check=True,
)
