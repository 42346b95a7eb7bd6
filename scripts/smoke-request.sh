#!/usr/bin/env bash
# One streamed `model: "auto"` chat request, as the README shows it; fails unless tokens
# arrive and the stream ends with `data: [DONE]`.
set -euo pipefail
base=${1:-http://127.0.0.1:8000}
out=$(mktemp)
curl -sS -N --fail-with-body --max-time 180 "$base/v1/chat/completions" \
  -H 'content-type: application/json' -D "$out.headers" \
  -d '{"model": "auto", "stream": true, "max_tokens": 32, "messages": [{"role": "user", "content": "Hello!"}]}' \
  > "$out"
tokens=$(grep -c '"content":"[^"]' "$out" || true)
tier=$(tr -d '\r' < "$out.headers" | awk -F': ' 'tolower($1)=="x-tierserve-tier" {print $2}')
if [ "$tokens" -lt 1 ] || [ "$(grep -v '^\s*$' "$out" | tail -n 1 | tr -d '\r')" != "data: [DONE]" ]; then
  echo "[smoke] no tokens or no [DONE] in the stream:"; cat "$out"; exit 1
fi
echo "[smoke] streamed $tokens chunks with content from tier '$tier', ended with [DONE]"
rm -f "$out" "$out.headers"
