#!/usr/bin/env bash
# Installs what the service and the tests need on a fresh Debian machine with Node 20 and Go:
# redis-server, chromium and the docker-compose client (Debian), FerretDB v1 (built from the Go module proxy),
# moto server and schemathesis (PyPI, in .venv-moto and .venv-schemathesis), the Kubernetes control plane
# of the k8s platform's tests (scripts/provision-k8s.sh) and the npm dependencies. Idempotent: a second run
# only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION=v1.24.2
# Our build of it: the version plus scripts/ferretdb.patch (see below). A different build gets replaced.
FERRETDB_BUILD="$FERRETDB_VERSION-meeboter.2"
GOBIN_DIR="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "provision: installing redis-server"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# The compose file is checked with the Compose client in the tests (no Docker engine is needed or started).
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  echo "provision: installing docker-compose (the client, to check docker-compose.yml)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null
fi

# The fleet page's test drives Debian's chromium with playwright-core.
if ! command -v chromium >/dev/null 2>&1; then
  echo "provision: installing chromium (for the fleet page's browser test)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if [ "$("$GOBIN_DIR/ferretdb" --version 2>/dev/null | awk '/^version:/ {print $2}')" != "$FERRETDB_BUILD" ]; then
  echo "provision: building FerretDB $FERRETDB_BUILD (first time takes a minute or two)"
  # `go install` of the module panics at startup without build/version/version.txt, which the published
  # module does not contain; so build from a copy of the module source with that file added.
  go mod download "github.com/FerretDB/FerretDB@$FERRETDB_VERSION"
  src="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
  work="$(mktemp -d)"
  cp -r "$src" "$work/ferretdb" && chmod -R u+w "$work/ferretdb"
  echo "$FERRETDB_BUILD" > "$work/ferretdb/build/version/version.txt"
  # scripts/ferretdb.patch, two changes to how the SQLite backend finds documents by _id (README, "MongoDB-
  # compatible servers"):
  # - it created its _id index on `_ferretdb_sjson->"_id"` but looked documents up by `_ferretdb_sjson->'$._id'`;
  #   SQLite uses an expression index only for the identical expression, so every lookup scanned the table;
  # - it looked up by _id only for a filter of `{_id: value}` alone, and scanned and decoded every document for
  #   any other, such as the flusher's versioned update `{_id, $or: [changeVersion...]}` or `{_id: {$in}}`.
  #   A filter with one top-level _id equality or $in now reads just those documents; the handler still
  #   applies the whole filter to them.
  git -C "$work/ferretdb" apply "$PWD/scripts/ferretdb.patch"
  (cd "$work/ferretdb" && go build -o "$GOBIN_DIR/ferretdb" ./cmd/ferretdb)
  rm -rf "$work"
fi

# Python tools of the tests, each pinned in its own venv: moto server (the AWS peer of the aws platform's tests)
# and schemathesis (the fuzz of the OpenAPI document, test/fuzz.test.ts). A venv with the pinned version is
# left as it is; any other is made anew.
python_tool() { # <venv> <python module to ask for __version__> <version> <pip requirement>
  local venv="$1" module="$2" version="$3" requirement="$4"
  if [ "$("$venv/bin/python" -c "import $module; print($module.__version__)" 2>/dev/null)" != "$version" ]; then
    echo "provision: installing $requirement into $venv"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement"
  fi
}
MOTO_VERSION=5.2.5
python_tool .venv-moto moto "$MOTO_VERSION" "moto[server]==$MOTO_VERSION"
SCHEMATHESIS_VERSION=4.32.5
python_tool .venv-schemathesis schemathesis "$SCHEMATHESIS_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"

bash scripts/provision-k8s.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "provision: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "provision: redis-server $(redis-server --version | awk '{print $3}'), ferretdb $("$GOBIN_DIR/ferretdb" --version 2>/dev/null | head -1 | awk '{print $2}'), moto $MOTO_VERSION, schemathesis $SCHEMATHESIS_VERSION, node $(node --version)"
