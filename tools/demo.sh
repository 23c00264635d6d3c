#!/usr/bin/env bash
# make demo: start fleetd on its embedded SQLite store, apply
# examples/quickstart with real Terraform through our provider, and show
# what fleetd now holds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
demo="$root/.demo"
tf="$root/.tools/bin/terraform"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
mkdir -p "$demo/data" "$demo/work"
rm -f "$demo/data/admin.addr"

port="${FLEETD_PORT:-8470}"
if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
  echo "port $port is busy; using a free port instead"
  port=0
fi
"$bin/fleetd" serve --listen "127.0.0.1:$port" --data-dir "$demo/data" >"$demo/fleetd.log" 2>&1 &
fleetd_pid=$!
trap 'kill $fleetd_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [[ -f "$demo/data/admin.addr" ]] && break; sleep 0.1; done
[[ -f "$demo/data/admin.addr" ]] || { cat "$demo/fleetd.log"; exit 1; }
export FLEET_ENDPOINT="http://$(cat "$demo/data/admin.addr")"
export FLEET_TOKEN="$(cat "$demo/data/admin-token")"
echo "fleetd listening on $FLEET_ENDPOINT (data in $demo/data)"

cat >"$demo/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "fleetform/fleet" = "$bin"
  }
  direct {}
}
RC
export TF_CLI_CONFIG_FILE="$demo/terraformrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
cp "$root"/examples/quickstart/*.tf "$demo/work/"
cd "$demo/work"
"$tf" apply -auto-approve -input=false
echo
echo "== device groups read back from fleetd =="
curl -fsS -H "Authorization: Bearer $FLEET_TOKEN" "$FLEET_ENDPOINT/v1/device-groups" | python3 -m json.tool
echo
echo "Second plan (must be empty):"
"$tf" plan -detailed-exitcode -input=false >/dev/null && echo "No changes. fleetd matches the configuration."
