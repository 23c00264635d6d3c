#!/usr/bin/env bash
# Python tools for the reliability suite, in a project-local venv
# (.tools/pyvenv): schemathesis (API fuzzing from /openapi.json) and
# openapi-spec-validator. Versions pinned in tools/python-requirements.txt.
# Idempotent: reinstalls only when the requirements file changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.tools/pyvenv"
req="$root/tools/python-requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/schemathesis" && -x "$venv/bin/openapi-spec-validator" \
      && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
mkdir -p "$root/.tools"
# Several test processes may call this at once: one installs, others wait.
exec 9>"$root/.tools/pyvenv.lock"
flock 9
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then exit 0; fi
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet --no-input -r "$req" </dev/null
echo "$want" > "$stamp"
"$venv/bin/schemathesis" --version
