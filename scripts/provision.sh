#!/usr/bin/env bash
# Installs what the service needs on a fresh Debian machine with Go: redis-server (Debian), FerretDB v1
# (our build, from the Go module proxy) and the npm dependencies, among them the Node the npm scripts run on
# (the `node` devDependency). Cold about a minute and a half on a quiet machine (README, Quick start),
# seconds when everything is present; prints how long it took.
#
# With --test it also installs what only the tests use: chromium and the docker-compose client (Debian),
# moto server and schemathesis (PyPI, in .venv-moto and .venv-schemathesis), and the Kubernetes control plane
# of the k8s platform's tests (scripts/provision-k8s.sh, about 8 minutes cold), and Toxiproxy (the chaos run's
# network faults, from the Go module proxy).
#
# Idempotent: a second run only checks. Every step prints what it does and how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/provision-steps.sh

TEST=0
case "${1:-}" in
  --test) TEST=1 ;;
  "") ;;
  *) echo "usage: bash scripts/provision.sh [--test]" >&2; exit 2 ;;
esac
provision_start=$(date +%s)

FERRETDB_VERSION=v1.24.2
# Our build of it: the version plus scripts/ferretdb.patch (see below). A different build gets replaced.
FERRETDB_BUILD="$FERRETDB_VERSION-meeboter.2"
GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"

if ! command -v redis-server >/dev/null 2>&1; then
  step "installing redis-server (Debian)" apt_install redis-server
fi

build_ferretdb() {
  # `go install` of the module panics at startup without build/version/version.txt, which the published
  # module does not contain; so build from a copy of the module source with that file added.
  go mod download -x "github.com/FerretDB/FerretDB@$FERRETDB_VERSION"
  local src work
  src="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
  work="$(mktemp -d)"
  cp -r "$src" "$work/ferretdb" && chmod -R u+w "$work/ferretdb"
  echo "$FERRETDB_BUILD" >"$work/ferretdb/build/version/version.txt"
  # scripts/ferretdb.patch, two changes to how the SQLite backend finds documents by _id (README, "MongoDB-
  # compatible servers"):
  # - it created its _id index on `_ferretdb_sjson->"_id"` but looked documents up by `_ferretdb_sjson->'$._id'`;
  #   SQLite uses an expression index only for the identical expression, so every lookup scanned the table;
  # - it looked up by _id only for a filter of `{_id: value}` alone, and scanned and decoded every document for
  #   any other, such as the flusher's versioned update `{_id, $or: [changeVersion...]}` or `{_id: {$in}}`.
  #   A filter with one top-level _id equality or $in now reads just those documents; the handler still
  #   applies the whole filter to them.
  git -C "$work/ferretdb" apply "$PWD/scripts/ferretdb.patch"
  (cd "$work/ferretdb" && go build -v -ldflags "-s -w" -o "$GOBIN_DIR/ferretdb" ./cmd/ferretdb)
  rm -rf "$work"
}
ferretdb_build() { "$GOBIN_DIR/ferretdb" --version 2>/dev/null | awk '/^version:/ {print $2}'; }

install_npm_dependencies() {
  npm ci --no-audit --no-fund --loglevel=error
}

# The two slow steps of a cold machine, FerretDB's Go build (CPU) and npm ci (mostly network), run side by
# side; each reports on its own.
pids=()
if [ "$(ferretdb_build)" != "$FERRETDB_BUILD" ]; then
  step "building FerretDB $FERRETDB_BUILD (Go module proxy)" build_ferretdb &
  pids+=($!)
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing the npm dependencies (npm ci)" install_npm_dependencies &
  pids+=($!)
fi
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then
    kill "${pids[@]}" 2>/dev/null || true
    exit 1
  fi
done

if [ "$TEST" = 1 ]; then
  # The compose file is checked with the Compose client in the tests (no Docker engine is needed or started).
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    step "installing docker-compose (Debian; the client, to check docker-compose.yml)" apt_install docker-compose
  fi
  # The fleet page's test drives Debian's chromium with playwright-core.
  if ! command -v chromium >/dev/null 2>&1; then
    step "installing chromium (Debian; for the fleet page's browser test)" apt_install chromium
  fi

  # Python tools of the tests, each pinned in its own venv: moto server (the AWS peer of the aws platform's
  # tests) and schemathesis (the fuzz of the OpenAPI document, test/fuzz.test.ts). A venv with the pinned
  # version is left as it is; any other is made anew.
  make_venv() { # <venv> <pip requirement>
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      apt_install python3 python3-venv
    fi
    rm -rf "$1"
    python3 -m venv "$1"
    "$1/bin/pip" install --progress-bar off --disable-pip-version-check "$2"
  }
  python_tool() { # <venv> <python module to ask for __version__> <version> <pip requirement>
    if [ "$("$1/bin/python" -c "import $2; print($2.__version__)" 2>/dev/null)" != "$3" ]; then
      step "installing $4 into $1 (PyPI)" make_venv "$1" "$4"
    fi
  }
  MOTO_VERSION=5.2.5
  python_tool .venv-moto moto "$MOTO_VERSION" "moto[server]==$MOTO_VERSION"
  SCHEMATHESIS_VERSION=4.32.5
  python_tool .venv-schemathesis schemathesis "$SCHEMATHESIS_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"

  bash scripts/provision-k8s.sh

  # Toxiproxy (Shopify's), the network faults of the chaos run (reliability/chaos/toxiproxy.ts): built from the
  # Go module proxy into a cache directory named by its version, like the control plane; a second run only
  # checks.
  TOXIPROXY_VERSION=v2.5.0
  TOXIPROXY_BIN="${MEEBOTER_TOXIPROXY_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/meeboter/toxiproxy-$TOXIPROXY_VERSION/bin}"
  build_toxiproxy() {
    local work
    work="$(mktemp -d)"
    GOBIN="$work" CGO_ENABLED=0 go install -v -trimpath \
      -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
      "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    mkdir -p "$TOXIPROXY_BIN"
    mv "$work/server" "$TOXIPROXY_BIN/toxiproxy-server"
    rm -rf "$work"
  }
  if [ ! -x "$TOXIPROXY_BIN/toxiproxy-server" ]; then
    step "building toxiproxy-server $TOXIPROXY_VERSION into $TOXIPROXY_BIN (Go module proxy)" build_toxiproxy
  fi
  tools=", moto $MOTO_VERSION, schemathesis $SCHEMATHESIS_VERSION, the k8s control plane, toxiproxy $TOXIPROXY_VERSION"
fi

echo "provision: ready in $(($(date +%s) - provision_start)) s$([ "$TEST" = 1 ] && echo ' (with the test peers)'):" \
  "redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2), ferretdb $(ferretdb_build)${tools:-}," \
  "node $(npm exec --offline -- node --version) for the npm scripts"
