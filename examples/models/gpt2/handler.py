"""TorchServe handler for GPT-2 small (124 M parameters, seeded random weights).

Two routes:
- plain `/predictions/gpt2`: the body is a prompt (text); the answer is
  `{"generated": "..."}`;
- `/predictions/gpt2/1.0/v1/chat/completions` (what a TensorZero gateway's
  OpenAI provider calls): the last user message is the prompt; the answer
  is a chat completion with one choice.

Generation is greedy and short (`max_tokens` in the request, else 8 new
tokens), so a request costs about what a short completion costs. No weights
or tokenizer can be downloaded: the weights are initialised from seed 0 when
the worker loads (the same on every worker) and the tokenizer is a byte-level
BPE trained at build time on text shipped with torch. Random weights emit ids
the small tokenizer does not have: they are folded into its vocabulary.
"""
import os

import torch
from tokenizers import Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel
from ts.torch_handler.base_handler import BaseHandler

import openai_route

DEFAULT_NEW_TOKENS = 8
MAX_NEW_TOKENS = 64
MAX_PROMPT_TOKENS = 256


def prompt_and_length(route, row):
    if route == openai_route.CHAT:
        request = openai_route.json_of(row)
        texts, images = openai_route.chat_parts(request)
        if images:
            raise ValueError("gpt2 reads text only")
        wanted = request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_NEW_TOKENS
        return " ".join(texts), max(1, min(int(wanted), MAX_NEW_TOKENS))
    if route is None:
        return openai_route.text_of(row), DEFAULT_NEW_TOKENS
    raise ValueError("gpt2 answers chat completions, not embeddings")


class Gpt2Handler(BaseHandler):
    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        torch.manual_seed(0)
        self.model = GPT2LMHeadModel(GPT2Config()).eval()
        self.vocabulary = self.tokenizer.get_vocab_size()
        self.initialized = True

    def generate(self, prompt, new_tokens):
        ids = self.tokenizer.encode(prompt or " ").ids[-MAX_PROMPT_TOKENS:] or [0]
        with torch.inference_mode():
            output = self.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        new = [int(i) % self.vocabulary for i in output[0, len(ids):].tolist()]
        return self.tokenizer.decode(new), len(ids), len(new)

    def handle(self, data, context):
        answers = []
        for index, row in enumerate(data):
            try:
                route = openai_route.route_of(context, index)
                prompt, new_tokens = prompt_and_length(route, row)
                text, prompt_tokens, completion_tokens = self.generate(prompt, new_tokens)
            except (ValueError, KeyError, TypeError) as error:
                context.set_response_status(400, str(error), index)
                answers.append(openai_route.error_reply(str(error)))
                continue
            if route == openai_route.CHAT:
                answers.append(openai_route.chat_reply("gpt2", text, prompt_tokens, completion_tokens))
            else:
                answers.append({"generated": text})
        return answers
