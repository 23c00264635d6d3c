#!/usr/bin/env bash
# make demo: start fleetd on its embedded SQLite store, apply
# examples/quickstart with real Terraform through our provider, bring
# simulated meters online with fleet-sim, start the firmware rollout and
# watch it progress over them to its summary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
demo="$root/.demo"
tf="$root/.tools/bin/terraform"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
devices="${DEMO_DEVICES:-500}"
# Every demo starts from an empty fleet.
rm -rf "$demo"
mkdir -p "$demo/data" "$demo/work"

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
"$bin/fleet-sim" factory-ca --out factory --common-name "Meter factory CA" >/dev/null
echo "== terraform apply: the fleet, with the rollout paused until the meters are online =="
"$tf" apply -auto-approve -input=false
echo
echo "== device groups read back from fleetd =="
curl -fsS -H "Authorization: Bearer $FLEET_TOKEN" "$FLEET_ENDPOINT/v1/device-groups" \
  | python3 -c 'import json,sys; [print("  %-24s %s" % (g["path"], g["id"])) for g in json.load(sys.stdin)["items"]]'

out() { "$tf" output -json "$1" | python3 -c "import json,sys; v=json.load(sys.stdin); print(v$2)"; }
rollout_id="$(out rollout '["id"]')"
enrollment_id="$(out enrollment_id '')"

# Once every meter has enrolled, set the rollout running (in the
# background: the simulator owns the terminal meanwhile).
(
  for _ in $(seq 1 600); do
    n="$(curl -fsS -H "Authorization: Bearer $FLEET_TOKEN" "$FLEET_ENDPOINT/v1/enrollments/$enrollment_id" \
         | python3 -c 'import json,sys; print(json.load(sys.stdin)["enrolled_count"])')"
    [[ "$n" -ge "$devices" ]] && break
    sleep 0.5
  done
  "$tf" apply -auto-approve -input=false -var rollout_state=running >"$demo/apply-rollout.log" 2>&1
) &
starter=$!

echo
echo "== $devices simulated meters enroll; the rollout starts once they are all online =="
"$bin/fleet-sim" --fleetd-data-dir "$demo/data" --factory-dir factory \
  --devices "$devices" --hardware m2 --prefix meter --firmware 1.0.0 \
  --fail-rate 0.01 --fail-version 1.1.0 --checkin-interval 500ms \
  --watch-rollout "$rollout_id" --until-rollout-done --duration 600s \
  --ledger "$demo/ledger.jsonl"
wait "$starter" || { cat "$demo/apply-rollout.log"; exit 1; }

echo
echo "== what Terraform now sees =="
"$tf" apply -refresh-only -auto-approve -input=false >/dev/null
"$tf" output rollout
echo
echo "Second plan (must be empty):"
"$tf" plan -detailed-exitcode -input=false -var rollout_state=running >/dev/null \
  && echo "No changes. fleetd matches the configuration."
echo "(fleetd's log: $demo/fleetd.log; the simulator's ledger: $demo/ledger.jsonl)"
