"""TorchServe handler for BERT-base (110 M parameters, seeded random weights).

Two routes:
- plain `/predictions/bert`: the body is text; the answer is
  `{"embedding": [768 floats]}`;
- `/predictions/bert/1.0/v1/embeddings` (what a TensorZero gateway's
  OpenAI provider calls): `input` is a string or a list of strings; the
  answer has one embedding per input, in order.

An embedding is the mean of the last hidden states over the tokens (padding
left out). Requests of a batch run as one padded forward pass. No weights or
vocabulary can be downloaded: weights are initialised from seed 0 when the
worker loads, and the WordPiece vocabulary is trained at build time on text
shipped with torch. bert-onnx.mar holds the same weights exported to ONNX
(seed 0, at build time) and runs them through onnxruntime.
"""
import os

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel
from ts.torch_handler.base_handler import BaseHandler

import openai_route

MAX_TOKENS = 128


def onnx_session(path):
    """bert-onnx.mar's model: an onnxruntime session, with OMP_NUM_THREADS
    intra-op threads when that is set."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit():
        options.intra_op_num_threads = int(threads)
    return onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def texts_of(route, row):
    if route == openai_route.EMBEDDINGS:
        return openai_route.embedding_inputs(openai_route.json_of(row))
    if route is None:
        return [openai_route.text_of(row)]
    raise ValueError("bert answers embeddings, not chat completions")


class BertHandler(BaseHandler):
    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        serialized = context.manifest["model"].get("serializedFile", "")
        if serialized.endswith(".onnx"):
            self.model = onnx_session(os.path.join(model_dir, serialized))
        else:
            torch.manual_seed(0)
            self.model = BertModel(BertConfig()).eval()
        self.initialized = True

    def embed(self, texts):
        encodings = self.tokenizer.encode_batch([t or " " for t in texts])
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        if isinstance(self.model, torch.nn.Module):
            with torch.inference_mode():
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
            hidden = torch.from_numpy(self.model.run(None, feed)[0])
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return [[round(float(x), 6) for x in v] for v in vectors], int(mask.sum())

    def handle(self, data, context):
        answers = [None] * len(data)
        texts, owners = [], []
        for index, row in enumerate(data):
            try:
                route = openai_route.route_of(context, index)
                mine = texts_of(route, row)
            except (ValueError, KeyError, TypeError) as error:
                context.set_response_status(400, str(error), index)
                answers[index] = openai_route.error_reply(str(error))
                continue
            answers[index] = route
            owners.extend([index] * len(mine))
            texts.extend(mine)
        if texts:
            vectors, tokens = self.embed(texts)
            for index in sorted(set(owners)):
                mine = [v for v, owner in zip(vectors, owners) if owner == index]
                if answers[index] == openai_route.EMBEDDINGS:
                    answers[index] = openai_route.embeddings_reply("bert", mine, tokens)
                else:
                    answers[index] = {"embedding": mine[0]}
        return answers
