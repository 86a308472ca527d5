"""Build a TorchServe archive for a text model with no files to download.

The archive holds the handler, `openai_route.py` and a tokenizer trained here
on text that ships with torch (its `nn` sources: English docstrings and
code), so the build needs no network. Weights are not stored: the handler
initialises them from a fixed seed when a worker loads, which is what a
stored seeded initialisation would give, without 0.5 GB archives.
"""
import argparse
import pathlib
import subprocess
import tempfile

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

COMMON = pathlib.Path(__file__).resolve().parent


def training_files():
    root = pathlib.Path(torch.__file__).resolve().parent / "nn"
    files = sorted(str(p) for p in root.rglob("*.py"))
    if not files:
        raise SystemExit(f"no training text under {root}")
    return files


def byte_level_bpe(vocab_size: int) -> Tokenizer:
    """GPT-2's kind of tokenizer: byte-level BPE."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train(training_files(), trainer)
    return tokenizer


def word_piece(vocab_size: int) -> Tokenizer:
    """BERT's kind of tokenizer: lower-cased WordPiece with [CLS] … [SEP]."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tokenizer.train(training_files(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return tokenizer


def build(name: str, directory: pathlib.Path, tokenizer_kind: str, version: str = "1.0", onnx_export=None) -> None:
    """`onnx_export(path)`, when given, writes the model as ONNX to `path`:
    NAME-onnx.mar then holds it (its handler runs it through onnxruntime)."""
    parser = argparse.ArgumentParser(description=f"build {name}.mar")
    parser.add_argument("--archiver", default="torch-model-archiver")
    parser.add_argument("--export-path", required=True)
    args = parser.parse_args()

    make = {"byte-level-bpe": byte_level_bpe, "word-piece": word_piece}[tokenizer_kind]
    tokenizer = make(8000)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_file = pathlib.Path(scratch) / "tokenizer.json"
        tokenizer.save(str(tokenizer_file))
        archive = [
            args.archiver,
            "--version", version,
            "--handler", str(directory / "handler.py"),
            "--extra-files", f"{tokenizer_file},{COMMON / 'openai_route.py'}",
            "--export-path", args.export_path,
            "--force",
        ]
        subprocess.run(archive + ["--model-name", name], check=True)
        if onnx_export is not None:
            exported = pathlib.Path(scratch) / f"{name}-onnx.onnx"
            onnx_export(exported)
            subprocess.run(
                archive + ["--model-name", f"{name}-onnx", "--serialized-file", str(exported)], check=True
            )
