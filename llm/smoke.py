#!/usr/bin/env python3
"""Smoke-test a running llm/serve.py: one structured-output chat completion.

    python3 llm/smoke.py [--base-url http://127.0.0.1:8089] [--repeat 3] [--no-cache]
                         [--show-response]

Sends an OpsGuard-shaped "diagnosis" request (temperature 0, max_tokens 200,
response_format json_schema in the nested form llama.cpp honours; the same
schema as src/llm/prompt.rs's diagnosis_schema: a quote, a reason and a cause
category), checks that choices[0].message.content is JSON obeying the schema
and that the quote occurs verbatim in the data sent, and prints the latency
and the server's `timings`. Exits non-zero if any check fails. Standard
library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

CATEGORIES = [
    "killed-once",
    "log-flood",
    "deliberate-stop",
    "misconfiguration",
    "resource-exhaustion",
    "data-problem",
    "unclear",
]

# Property order matters: llama.cpp's grammar writes them in this order
# (evidence, reasoning, then the category that follows from them).
SCHEMA = {
    "type": "object",
    "properties": {
        "quote": {"type": "string", "minLength": 1, "maxLength": 200},
        "reason": {"type": "string", "minLength": 1, "maxLength": 120},
        "category": {"type": "string", "enum": CATEGORIES},
    },
    "required": ["quote", "reason", "category"],
    "additionalProperties": False,
}

DATA = [
    "exit code 137 (SIGKILL), OOM flag false, disk 41 % used, up 3 h before the crash",
    "LOG:  server process (PID 212) was terminated by signal 9: Killed",
    "LOG:  terminating any other active server processes",
]

MESSAGES = [
    {
        "role": "system",
        "content": (
            "You are OpsGuard's diagnostician for a crashed PostgreSQL container. Read the "
            "facts first, then the log lines, and name the one cause category the evidence "
            "shows. Reply with only a JSON object {\"quote\": \"<one fact or log line, "
            "copied exactly>\", \"reason\": \"<one short sentence>\", \"category\": "
            "\"<one of: " + ", ".join(CATEGORIES) + ">\"}."
        ),
    },
    {
        "role": "user",
        "content": "<data>\n" + "\n".join(DATA) + "\n</data>\nWhich cause category does this "
        "evidence show? Quote the one fact or log line that shows it.",
    },
]


def request_body(cache_prompt: bool) -> dict:
    body = {
        "messages": MESSAGES,
        "temperature": 0,
        "max_tokens": 200,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "diagnosis", "schema": SCHEMA},
        },
    }
    if not cache_prompt:
        body["cache_prompt"] = False  # llama.cpp extension: re-evaluate the whole prompt
    return body


def check_diagnosis(content: str) -> dict:
    obj = json.loads(content)
    if not isinstance(obj, dict):
        raise ValueError("content is not a JSON object")
    if set(obj) != {"quote", "reason", "category"}:
        raise ValueError(f"unexpected keys: {sorted(obj)}")
    if obj["category"] not in CATEGORIES:
        raise ValueError(f"category not in enum: {obj['category']!r}")
    for key in ("quote", "reason"):
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise ValueError(f"{key} must be a non-empty string")
    # OpsGuard compares whitespace runs as one space; so does this check.
    norm = lambda t: " ".join(t.split())
    if not any(norm(obj["quote"]) in norm(line) for line in DATA):
        raise ValueError(f"quote not found in the data sent: {obj['quote']!r}")
    return obj


def main() -> int:
    ap = argparse.ArgumentParser()
    port = os.environ.get("OPSGUARD_LLM_PORT", "8089")
    ap.add_argument("--base-url", default=f"http://127.0.0.1:{port}")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-cache", action="store_true", help="send cache_prompt=false")
    ap.add_argument("--show-response", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    data = json.dumps(request_body(not args.no_cache)).encode()
    ok = True
    for i in range(args.repeat):
        req = urllib.request.Request(
            args.base_url.rstrip("/") + "/v1/chat/completions",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            raw = resp.read()
        elapsed = time.monotonic() - t0
        reply = json.loads(raw)
        if args.show_response:
            print(json.dumps(reply, indent=2))
        content = reply["choices"][0]["message"]["content"]
        try:
            decision = check_diagnosis(content)
            verdict = f"OK {json.dumps(decision)}"
        except Exception as exc:  # noqa: BLE001
            ok = False
            verdict = f"FAIL {exc}: {content!r}"
        t = reply.get("timings", {})
        print(
            f"#{i + 1} {elapsed * 1000:.0f} ms wall | prompt {t.get('prompt_n')} tok "
            f"({t.get('cache_n')} cached) {t.get('prompt_ms', 0):.0f} ms | "
            f"gen {t.get('predicted_n')} tok {t.get('predicted_ms', 0):.0f} ms "
            f"({t.get('predicted_per_second', 0):.1f} tok/s) | "
            f"finish={reply['choices'][0].get('finish_reason')} | {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
