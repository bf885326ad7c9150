# Sourced by the multi-node launch scripts: which network interface Gloo and
# NCCL use. Left alone, Gloo binds to what the host name resolves to, which
# on many machines is loopback (Debian and Ubuntu map the host name to
# 127.0.1.1), so the other nodes can never connect.
#   set_socket_ifnames HOST [VARIABLE...]   for each variable (default:
#       GLOO_SOCKET_IFNAME NCCL_SOCKET_IFNAME): when unset, export the
#       interface that routes to HOST; when set, check that it names
#       interfaces of this host. Fails with a message otherwise.

# The interface this host uses to reach $1 (a host name or IPv4 address).
route_ifname() {
  local addr dev
  addr=$(getent ahostsv4 "$1" | awk 'NR == 1 { print $1 }')
  if [ -z "$addr" ]; then echo "error: cannot resolve '$1'" >&2; return 1; fi
  case $addr in 127.*)
    echo "error: '$1' resolves to the loopback address $addr on $(hostname); give an address the other nodes reach (ip -4 addr on that node)" >&2
    return 1 ;;
  esac
  dev=$(ip -o route get "$addr" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
  if [ "$dev" = lo ]; then  # $addr is this host's own address: take the interface that holds it
    dev=$(ip -o -4 addr show | awk -v a="$addr" '{ split($4, p, "/"); if (p[1] == a) print $2 }' | head -n 1)
  fi
  if [ -z "$dev" ]; then echo "error: no route from $(hostname) to $1 ($addr)" >&2; return 1; fi
  echo "$dev"
}

# Checks a comma-separated list of interface names; NCCL matches prefixes
# unless the list starts with '='; a list starting with '^' excludes.
check_ifnames() {
  local variable=$1 value=$2 exact=$3 name
  case $value in ^*) return 0 ;; =*) exact=1; value=${value#=} ;; esac
  for name in ${value//,/ }; do
    if [ "$exact" = 1 ]; then
      ip -o link show dev "$name" >/dev/null 2>&1 && continue
    else
      ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep -q "^$name" && continue
    fi
    echo "error: $variable=$value: $(hostname) has no interface '$name' (it has: $(ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | tr '\n' ' '))" >&2
    return 1
  done
}

set_socket_ifnames() {
  local host=$1 variable dev=
  shift
  [ $# -gt 0 ] || set -- GLOO_SOCKET_IFNAME NCCL_SOCKET_IFNAME
  if ! command -v ip >/dev/null; then
    echo "warning: no 'ip' command (iproute2): $* neither set nor checked" >&2
    return 0
  fi
  for variable in "$@"; do
    if [ -n "${!variable:-}" ]; then
      check_ifnames "$variable" "${!variable}" "$([ "$variable" = NCCL_SOCKET_IFNAME ] && echo 0 || echo 1)" || return 1
    else
      [ -n "$dev" ] || dev=$(route_ifname "$host") || return 1
      export "$variable=$dev"
    fi
    echo "$(hostname): $variable=${!variable}" >&2
  done
}
