#!/usr/bin/env bash
# MSRV check: fails when a dependency declares a `rust-version` above the crate's.
#
# Other toolchains cannot be installed here, so the crate's `rust-version` is kept
# honest from what cargo knows: `cargo metadata --all-features` resolves every
# normal, build and optional dependency that any feature can pull in (features
# added later are covered without touching this script), on every platform, and
# each package states the Rust it needs. Dev-dependencies (test and benchmark
# peers) and the `cfg(loom)` model-checking dependencies are not part of what
# users build and are left out; a feature that only
# dev-dependencies enable on a shared crate may still be counted (cargo metadata
# unifies features), which errs on the safe side. Whether the crate's own code
# stays within `rust-version` is clippy's `incompatible_msrv` lint, in the clippy
# steps of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi

metadata=$(mktemp)
trap 'rm -f "$metadata"' EXIT
cargo metadata --locked --all-features --format-version 1 >"$metadata"
python3 - "$metadata" <<'PY'
import json
import sys

meta = json.load(open(sys.argv[1]))
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = meta["resolve"]["root"]


def version(text):
    parts = [int(p) for p in text.split(".")] + [0, 0, 0]
    return tuple(parts[:3])


def show(v):
    return ".".join(map(str, v))


def built_for_users(kind):
    """A normal or build edge, not one behind the crate's model-checking cfgs
    (`cfg(loom)`, `cfg(crossbeam_loom)`: set only by loom-tests/run.sh)."""
    return kind["kind"] != "dev" and "loom" not in (kind.get("target") or "")


# Every package reachable from the crate over such edges, on any platform.
reachable, todo = set(), [root]
while todo:
    for dep in nodes[todo.pop()]["deps"]:
        if not any(built_for_users(kind) for kind in dep["dep_kinds"]):
            continue
        if dep["pkg"] not in reachable:
            reachable.add(dep["pkg"])
            todo.append(dep["pkg"])

ours_text = packages[root].get("rust_version")
if not ours_text:
    sys.exit("FAILED: msrv: Cargo.toml declares no rust-version")
ours = version(ours_text)
declared = sorted(
    ((version(packages[p]["rust_version"]), packages[p]["name"], packages[p]["version"])
     for p in reachable if packages[p].get("rust_version")),
    reverse=True,
)
undeclared = sorted(packages[p]["name"] for p in reachable if not packages[p].get("rust_version"))
needed = declared[0][0] if declared else (0, 0, 0)
print(f"msrv: crate rust-version {show(ours)}; {len(reachable)} dependencies with all "
      f"features, {len(declared)} declare one; the highest: "
      + ", ".join(f"{name} {ver} ({show(v)})" for v, name, ver in declared[:3]))
if undeclared:
    print("msrv: no rust-version declared (not checked): " + ", ".join(undeclared))
too_new = [(v, name, ver) for v, name, ver in declared if v > ours]
if too_new:
    for v, name, ver in too_new:
        print(f"FAILED: msrv: {name} {ver} needs Rust {show(v)} > the crate's {show(ours)}",
              file=sys.stderr)
    sys.exit(f"FAILED: msrv: raise rust-version in Cargo.toml to {show(needed)} "
             "(or hold the dependency back)")
if ours > needed:
    print(f"msrv: ok (dependencies need {show(needed)}; the crate asks for more, "
          "which only its own code can justify)")
else:
    print("msrv: ok")
PY
