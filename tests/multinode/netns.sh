# Two "hosts" on this machine for the multi-node tests: network namespaces
# mr77a and mr77b joined by a veth pair (mrv77a 10.231.77.1/24 <->
# mrv77b 10.231.77.2/24), each with its own loopback. Nothing is routed
# outside the pair. Sourced by tests/multinode/*.sh:
#   netns_up        create both (after removing leftovers of a crashed run)
#   netns_down      remove both (call it from a trap)
#   on_host A|B cmd run cmd in namespace A or B, with its own host name
#                   (node-a / node-b, a UTS namespace) like a real node
#   cut_link        take the link down on both ends
NS_A=mr77a NS_B=mr77b
IF_A=mrv77a IF_B=mrv77b
ADDR_A=10.231.77.1 ADDR_B=10.231.77.2

# Exits 77 (CTest's skip code) with the reason when this cannot work here.
netns_require() {
  if [ "$(id -u)" != 0 ]; then echo "skipped: the multi-node tests need root (network namespaces)"; exit 77; fi
  if ! command -v ip >/dev/null; then echo "skipped: the multi-node tests need iproute2 (ip)"; exit 77; fi
  if ! command -v unshare >/dev/null; then echo "skipped: the multi-node tests need unshare (util-linux)"; exit 77; fi
}

netns_down() {
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  return 0
}

netns_up() {
  netns_down
  ip netns add "$NS_A" && ip netns add "$NS_B" &&
    ip link add "$IF_A" netns "$NS_A" type veth peer name "$IF_B" netns "$NS_B" &&
    ip -n "$NS_A" addr add "$ADDR_A/24" dev "$IF_A" && ip -n "$NS_B" addr add "$ADDR_B/24" dev "$IF_B" &&
    ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up &&
    ip -n "$NS_A" link set "$IF_A" up && ip -n "$NS_B" link set "$IF_B" up ||
    { echo "skipped: cannot create network namespaces and a veth pair here"; netns_down; exit 77; }
}

on_host() {
  local host=$1; shift
  local ns=$NS_A name=node-a
  [ "$host" = B ] && ns=$NS_B name=node-b
  ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}

cut_link() {
  ip -n "$NS_A" link set "$IF_A" down
  ip -n "$NS_B" link set "$IF_B" down
}
