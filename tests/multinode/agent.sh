#!/bin/sh
# Open MPI's remote launch agent for the multi-node tests (mpirun --mca
# plm_rsh_agent), standing in for ssh: "agent.sh HOST command..." runs the
# command (mpirun's orted) on HOST, here the network namespace that owns the
# address HOST (tests/multinode/netns.sh).
host=$1
shift
. "$(dirname "$0")/netns.sh"
case $host in
  "$ADDR_A") node=A ;;
  "$ADDR_B") node=B ;;
  *) echo "agent.sh: unknown host $host" >&2; exit 1 ;;
esac
on_host "$node" /bin/sh -c "$*"
