"""Real client libraries, run by tests/proxy/proxy_clients.rs against a server or the proxy.

usage: clients.py openai|ollama BASE_URL
Prints one JSON object: for each call, what the library handed its caller (the reply text,
the usage / counts, the finish reason, the number of stream chunks).
"""

import json
import sys

PROMPT = "Write one short sentence about the sea."


def run_openai(base):
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=300)
    common = dict(
        model="smol",
        messages=[{"role": "user", "content": PROMPT}],
        temperature=0,
        seed=42,
        max_tokens=24,
    )
    plain = client.chat.completions.create(stream=False, **common)
    out = {
        "plain": {
            "content": plain.choices[0].message.content,
            "finish_reason": plain.choices[0].finish_reason,
            "usage": plain.usage.model_dump() if plain.usage else None,
        }
    }
    content, finish, usage, chunks = [], None, None, 0
    for c in client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **common
    ):
        chunks += 1
        if c.usage is not None:
            usage = c.usage.model_dump()
        for ch in c.choices:
            if ch.delta.content:
                content.append(ch.delta.content)
            if ch.finish_reason:
                finish = ch.finish_reason
    out["stream"] = {
        "content": "".join(content),
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
    }
    return out


def run_ollama(base):
    import ollama

    client = ollama.Client(host=base, timeout=60)
    messages = [{"role": "user", "content": PROMPT}]
    plain = client.chat(model="llama3.2:latest", messages=messages, stream=False)
    out = {"plain": plain.model_dump()}
    chunks = [c.model_dump() for c in client.chat(model="llama3.2:latest", messages=messages, stream=True)]
    out["stream"] = {
        "content": "".join(c["message"]["content"] or "" for c in chunks),
        "chunks": chunks,
    }
    gen = client.generate(model="llama3.2:latest", prompt=PROMPT, stream=False)
    out["generate"] = gen.model_dump()
    return out


def main():
    kind, base = sys.argv[1], sys.argv[2].rstrip("/")
    out = run_openai(base) if kind == "openai" else run_ollama(base)
    json.dump(out, sys.stdout, sort_keys=True, default=str)


if __name__ == "__main__":
    main()
