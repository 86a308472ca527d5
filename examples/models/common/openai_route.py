"""The OpenAI-style route a TensorZero gateway uses in front of TorchServe.

TorchServe 0.12 serves /predictions/MODEL/VERSION/REST and hands REST to the
handler as the request header `url_path`: `v1/chat/completions` or
`v1/embeddings` when the gateway's provider points its `api_base` at
/predictions/MODEL/1.0/v1/. A plain /predictions/MODEL request has no such
header. JSON bodies arrive parsed; a returned dict goes back as JSON.
Shipped inside each archive as an extra file (the model folder is on the
worker's import path).
"""
import base64
import json
import time

CHAT = "chat/completions"
EMBEDDINGS = "embeddings"


def route_of(context, index):
    """CHAT, EMBEDDINGS, or None for the plain route."""
    path = (context.get_request_header(index, "url_path") or "").strip("/")
    if not path:
        return None
    for route in (CHAT, EMBEDDINGS):
        if path == route or path.endswith("/" + route):
            return route
    raise ValueError(f"unknown route '{path}': this model answers v1/{CHAT} and v1/{EMBEDDINGS}")


def raw_body(row):
    body = row.get("data")
    if body is None:
        body = row.get("body")
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    return b"" if body is None else body


def json_of(row):
    body = raw_body(row)
    if isinstance(body, dict):
        return body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return json.loads(body)


def text_of(row):
    body = raw_body(row)
    if isinstance(body, dict):
        return json.dumps(body)
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return str(body)


def chat_parts(request):
    """The texts and image data (bytes) of the last user message."""
    messages = [m for m in request.get("messages") or [] if m.get("role") == "user"]
    if not messages:
        raise ValueError("a chat request needs a user message")
    content = messages[-1].get("content")
    if isinstance(content, str):
        return [content], []
    texts, images = [], []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("text", ""))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not url.startswith("data:") or "," not in url:
                raise ValueError("images must be data URIs (data:image/...;base64,...)")
            images.append(base64.b64decode(url.split(",", 1)[1]))
    return texts, images


def embedding_inputs(request):
    given = request.get("input")
    if isinstance(given, str):
        return [given]
    if isinstance(given, list) and all(isinstance(i, str) for i in given) and given:
        return given
    raise ValueError("an embeddings request needs input: a string or a list of strings")


def chat_reply(model, content, prompt_tokens=0, completion_tokens=0):
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def embeddings_reply(model, vectors, prompt_tokens=0):
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def error_reply(message):
    return {"error": {"message": message, "type": "invalid_request_error"}}
