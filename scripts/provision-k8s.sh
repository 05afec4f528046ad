#!/usr/bin/env bash
# Builds the Kubernetes control plane the k8s adapter's tests run against, from the Go module proxy:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (v1.34.4), etcd (v3.6.16) and kwok (v0.7.0).
# The binaries go into a cache directory outside the repository named by the versions; a second run only
# checks. Cold: about 8 minutes and 2 GB of memory; with Go's build cache present: under a minute. Each binary
# is reported as it is built.
# The versions are pinned by the wrapper modules' go.mod/go.sum in test/k8s/tools/ (kwok by its own go.mod).
# Prints nothing but its summary line when the binaries are present.
set -euo pipefail
cd "$(dirname "$0")/.."
PROVISION_NAME=provision-k8s
source scripts/provision-steps.sh

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
BIN_DIR="${MEEBOTER_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/meeboter/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin}"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok"

if ! command -v openssl >/dev/null 2>&1; then
  step "installing openssl (Debian; the tests make the control plane's PKI with it)" apt_install openssl
fi

present=1
for b in $BINARIES; do [ -x "$BIN_DIR/$b" ] || present=0; done
if [ "$present" = 1 ] && [ -f "$BIN_DIR/.complete" ]; then
  echo "provision-k8s: control plane binaries present in $BIN_DIR"
  exit 0
fi

echo "provision-k8s: building the control plane into $BIN_DIR (cold: about 8 minutes; Go's build cache shortens it)"
start=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# Without these the binaries report v0.0.0, which clients may refuse.
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
# One binary per step, so each is reported when it is done; the packages they share compile once (Go's
# build cache). -v names each package as it compiles, for the step's progress lines.
kubernetes_binary() { (cd test/k8s/tools/kubernetes && go build -v -trimpath -ldflags "$ldflags" -o "$work/bin/" "k8s.io/kubernetes/cmd/$1"); }
n=0
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  n=$((n + 1))
  step "building $b $K8S_VERSION ($n/6)" kubernetes_binary "$b"
done
etcd_binary() { (cd test/k8s/tools/etcd && go build -v -trimpath -ldflags "-s -w" -o "$work/bin/etcd" .); }
step "building etcd $ETCD_VERSION (5/6)" etcd_binary
# kwok does not compile against the apimachinery kubernetes $K8S_VERSION needs, so it builds on its own go.mod.
kwok_binary() { GOBIN="$work/bin" go install -v -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
step "building kwok $KWOK_VERSION (6/6)" kwok_binary

mkdir -p "$BIN_DIR"
for b in $BINARIES; do mv "$work/bin/$b" "$BIN_DIR/$b"; done
touch "$BIN_DIR/.complete"
echo "provision-k8s: built in $(( $(date +%s) - start )) s: $("$BIN_DIR/kubectl" version --client 2>/dev/null | head -1)"
