#!/usr/bin/env bash
# The real node of the test environment. Runs as the only child of exactly-node-init, PID 1 of
# namespaces of its own: `unshare --mount --net --pid --fork --kill-child --mount-proc
# --propagation private`. Everything it starts (containerd, its shims and containers, kubelet,
# kube-proxy, CoreDNS) lives and dies in them: mounts, network links, nft rules and processes
# vanish when this script ends. The harness (tests/src/node.rs) writes every config file first,
# then moves the veth peer `eth0` into this network namespace, then creates $NODE_DIR/go.
#
# Environment: NODE_DIR (configs, state, logs), NODE_IP/NODE_PREFIX, HOST_IP (the host end of
# the veth, where the control plane and Kafka listen), NODE_NAME, NODE_PATH (tool bin dirs),
# NODE_LIB (libraries of the unpacked Debian packages).
set -euo pipefail
: "${NODE_DIR:?}" "${NODE_IP:?}" "${NODE_PREFIX:?}" "${HOST_IP:?}" "${NODE_NAME:?}" "${NODE_PATH:?}"
export PATH="$NODE_PATH:$PATH"
log() { printf '[node %s] %s\n' "$(date -u +%T)" "$*"; }
pids=()
stop() { # stop EXIT-CODE: TERM to each process, newest first; the rest dies with the namespace
  log "stopping"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  sleep 1
  exit "$1"
}
trap "stop 0" TERM INT

# 1. The network: wait for the harness to hand over the veth peer, then address it.
for _ in $(seq 600); do ip link show eth0 >/dev/null 2>&1 && break; sleep 0.05; done
ip link show eth0 >/dev/null 2>&1 || { log "no eth0 after 30s"; exit 1; }
ip link set lo up
ip addr add "$NODE_IP/$NODE_PREFIX" dev eth0
ip link set eth0 up
ip route add default via "$HOST_IP" dev eth0
echo 1 >/proc/sys/net/ipv4/ip_forward
touch "$NODE_DIR/net-ready"
log "network: $NODE_IP/$NODE_PREFIX via $HOST_IP"

for _ in $(seq 6000); do [ -e "$NODE_DIR/go" ] && break; sleep 0.1; done
[ -e "$NODE_DIR/go" ] || { log "never told to start"; exit 1; }

# 2. Host-wide kernel settings kubelet insists on are faked for this mount namespace only
#    (protectKernelDefaults: true then only reads them); the host's values stay as they are.
for f in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do
  mount --bind "$NODE_DIR/fake-sysctl/$(basename "$f")" "/proc/sys/$f"
done
# 3. Copy-on-write views of host directories the node writes by hard-coded path
#    (/run/containerd, /var/log/containers, /var/lib/cni, /var/lib/kubelet/device-plugins).
for d in /var/lib /var/log /run; do
  n=$(echo "$d" | tr / _)
  mkdir -p "$NODE_DIR/overlay/$n/upper" "$NODE_DIR/overlay/$n/work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$NODE_DIR/overlay/$n/upper,workdir=$NODE_DIR/overlay/$n/work" "$d"
done

# 4. In this mount namespace only, names resolve through the cluster DNS: a client the harness
#    runs here (nsenter into the node's network and mount namespaces) reaches brokers by the
#    Service names they advertise.
mount --bind "$NODE_DIR/node-resolv.conf" /etc/resolv.conf

start() { # start NAME COMMAND...: in the background, output in logs/NAME.log
  local name=$1; shift
  "$@" >"$NODE_DIR/logs/$name.log" 2>&1 &
  pids+=($!)
  log "$name started (pid $!)"
}

start containerd containerd --config "$NODE_DIR/containerd.toml"
sock="$NODE_DIR/containerd/containerd.sock"
for _ in $(seq 300); do [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address "$sock" version >/dev/null || { log "containerd did not come up"; exit 1; }
for image in "$NODE_DIR"/images/*.tar; do
  [ -e "$image" ] || continue
  ctr --address "$sock" -n k8s.io images import --snapshotter overlayfs "$image" >/dev/null
  log "imported $(basename "$image")"
done

start kubelet kubelet --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
  --root-dir="$NODE_DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --node-labels="exactly.dev/node=real" --v=1
start kube-proxy kube-proxy --config="$NODE_DIR/kube-proxy.yaml" --hostname-override="$NODE_NAME" --v=1
start coredns coredns -conf "$NODE_DIR/Corefile"
touch "$NODE_DIR/started"

# Any of them ending ends the node (the harness sees this script exit and reports the logs).
wait -n
log "a node process exited; stopping the node"
stop 1
