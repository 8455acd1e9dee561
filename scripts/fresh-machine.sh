#!/usr/bin/env bash
# README's commands as a new user meets them: a fresh clone of HEAD with ../shared beside it,
# an empty HOME (so no ~/.cache: no prepared model, no pip or DeepSpeed caches) and no
# PLE_CACHE_DIR. Usage: scripts/fresh-machine.sh [make targets...]   (default: test)
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d /tmp/ple-fresh.XXXXXX)
git clone -q "$repo" "$work/ple"
ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
mkdir "$work/home"
export HOME="$work/home"
unset PLE_CACHE_DIR
cd "$work/ple"
echo "fresh clone of $(git rev-parse --short HEAD) in $work/ple, HOME=$HOME"
for target in "${@:-test}"; do
    start=$(date +%s)
    make "$target"
    echo "make $target: $(( $(date +%s) - start )) s wall (fresh clone, empty cache)"
done
