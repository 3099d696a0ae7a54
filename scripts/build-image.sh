#!/usr/bin/env bash
# Builds the static project-http binary and the `FROM scratch` image.
#
#   scripts/build-image.sh [TAG]     # default: project-http:latest
#
# Needs only cargo and a Docker engine; nothing is pulled from a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-project-http:latest}
TARGET=$(rustc -vV | sed -n 's/^host: //p')
case "$TARGET" in
    *-linux-gnu) ;;
    *) echo "build-image.sh: expected a *-linux-gnu host, got $TARGET" >&2; exit 1 ;;
esac
echo "building a static binary for $TARGET"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$TARGET"
BINARY=${CARGO_TARGET_DIR:-target}/$TARGET/release/project-http
if ldd "$BINARY" 2>&1 | grep -q '=>'; then
    echo "build-image.sh: $BINARY is dynamically linked" >&2
    exit 1
fi
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp Dockerfile "$BINARY" "$CONTEXT/"
mkdir "$CONTEXT/static"
docker build --quiet -t "$TAG" "$CONTEXT" >/dev/null
SIZE=$(docker image inspect "$TAG" --format '{{.Size}}')
echo "built $TAG ($((SIZE / 1024)) KiB)"
