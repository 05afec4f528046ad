# Sourced by scripts/provision.sh and scripts/provision-k8s.sh: how a provisioning step reports itself.
#
# `step "<what>" <command...>` prints what it starts, a line every 30 s while it runs (with the last line of its
# output, so a long build is never silent), and how long it took when it ends. Its output goes to a log file;
# on failure the step is named with its exit code and the last 40 lines of that log, and the script stops.
# The command runs as a background job so that `set -e` still holds inside a shell function given as the
# command (it would not under `cmd || rc=$?`).

PROVISION_NAME="${PROVISION_NAME:-provision}"

# `sudo` when not root; apt-get installs need it.
as_root() { if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi; }

apt_install() { # <package...>
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

step() { # <what> <command...>
  local what="$1"
  shift
  local log start now last_report last_line rc=0 pid
  log="$(mktemp)"
  start=$(date +%s)
  last_report=$start
  echo "$PROVISION_NAME: $what ..."
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    if [ $((now - last_report)) -ge 30 ] && kill -0 "$pid" 2>/dev/null; then
      last_report=$now
      last_line="$(tail -n 1 "$log" | cut -c1-120)"
      echo "$PROVISION_NAME:   still $what ($((now - start)) s)${last_line:+: $last_line}"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$PROVISION_NAME: FAILED: $what (exit $rc after $(($(date +%s) - start)) s); the last lines of its output:" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    rm -f "$log"
    exit "$rc"
  fi
  rm -f "$log"
  echo "$PROVISION_NAME: $what: done in $(($(date +%s) - start)) s"
}
