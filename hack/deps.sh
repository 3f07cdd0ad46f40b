#!/usr/bin/env bash
# `make deps`: the system packages the demo and the tests use, installed with apt when it can.
#
#   iptables, iproute2   the transparent boundary (network namespaces + haltgate's rules):
#                        the demo's netns journey and tests/netns
#   util-linux           setpriv: the sidecar and the agent under their own UIDs
#   procps, psmisc       ps/pkill/fuser used by the process helpers of the test bed
#   prometheus           a real Prometheus (and promtool): the demo's dashboard picture and
#                        tests/observability
#   make                 this file's runner (listed for `.ci/run` on a bare image)
#   nginx-light          the native floor next to the Python relays in bench/http_floor.py
#   (pkg) shellcheck     lints e2e/run.sh (tests/chart/test_e2e_node_mode.py)
#
# As root with apt-get (Debian, Ubuntu) the missing ones are installed. Otherwise this says
# which are missing, what they are for and the command to run, and exits 0: the demo then
# runs its explicit-mode journey and the tests that need them say why they skip.
# DEPS_STRICT=1 (`.ci/run`) makes a missing package an error instead.
#
# The transparent journey runs the sidecar and the agent under their own UIDs (17337, 1000):
# they must be able to reach the Python interpreter and the checkout (pyenv installs Python
# under a 0700 $HOME). As root this adds o+x (traverse, not list or read) to the directories
# on those paths that lack it, and says which; otherwise it says what to run.
set -euo pipefail

PACKAGES=(make iptables iproute2 procps psmisc util-linux prometheus nginx-light shellcheck)
STRICT="${DEPS_STRICT:-0}"

installed() {
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
    return
  fi
  case "$1" in  # not Debian: look for the commands instead
    iptables) command -v iptables-restore >/dev/null ;;
    iproute2) command -v ip >/dev/null ;;
    util-linux) command -v setpriv >/dev/null ;;
    procps) command -v ps >/dev/null ;;
    psmisc) command -v fuser >/dev/null ;;
    nginx-light) command -v nginx >/dev/null ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# As root, or through sudo as .ci/run uses it: without a password when sudo allows that,
# else asking for it when someone is at the terminal (the README's line run by a user).
# Sets as_root (empty as root, or when sudo cannot be used); WHY is said before a prompt.
as_root=()
escalated=0
escalate() {  # WHY
  (( escalated )) && return 0
  escalated=1
  (( EUID != 0 )) && command -v sudo >/dev/null 2>&1 || return 0
  if sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  elif [[ -t 0 ]]; then
    echo "deps: $1 with sudo"
    sudo -v && as_root=(sudo)
  fi
  return 0
}

traversable() {  # PATH...: every directory above each path lets other UIDs through
  local path dir perm blocked=()
  for path in "$@"; do
    dir=$(dirname "$path")
    while [[ "$dir" != / && -n "$dir" ]]; do
      perm=$(stat -c %A "$dir" 2>/dev/null) || perm=""
      [[ "$perm" == *[xt] ]] || blocked+=("$dir")
      dir=$(dirname "$dir")
    done
  done
  (( ${#blocked[@]} )) || return 0
  mapfile -t blocked < <(printf '%s\n' "${blocked[@]}" | sort -u)
  (( EUID == 0 )) || escalate "letting the sidecar's UID through ${blocked[*]}"
  if (( EUID == 0 )) || (( ${#as_root[@]} )); then
    "${as_root[@]}" chmod o+x "${blocked[@]}"
    echo "deps: other UIDs may now traverse (o+x, no listing): ${blocked[*]}"
  else
    echo "deps: the sidecar's UID cannot reach the interpreter or the checkout through" \
         "${blocked[*]}: run  chmod o+x ${blocked[*]}" >&2
  fi
}

python=$(command -v "${BOOTSTRAP_PYTHON:-python3}" || true)
[[ -n "$python" ]] && traversable "$(readlink -f "$python")" "$(pwd)/Makefile"

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if (( ${#missing[@]} == 0 )); then
  echo "deps: system packages present: ${PACKAGES[*]}"
  exit 0
fi

escalate "installing ${missing[*]}"
if { (( EUID == 0 )) || (( ${#as_root[@]} )); } && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing ${missing[*]} (${as_root[*]:+sudo }apt-get)"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps: installed ${missing[*]}"
  exit 0
fi

why="not root"
(( EUID == 0 )) && why="no apt-get on this machine"
cat >&2 <<EOF
deps: missing system packages: ${missing[*]} (cannot install them: ${why}).
  Install them, e.g.:  sudo apt-get install -y ${missing[*]}
  Without iptables/iproute2/util-linux the demo shows the explicit-mode journey only (no
  transparent boundary) and tests/netns skip; without prometheus the demo draws no
  dashboard picture and tests/observability skip.
EOF
if [[ "$STRICT" == 1 ]]; then exit 1; fi
exit 0
