#!/usr/bin/env bash
# Installs the pinned real test environment into a version-keyed cache outside the repo:
#   Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl),
#   etcd, kwok and helm, all built from the Go module proxy; Apache Kafka and Apache Pulsar
#   (standalone) from Maven Central; the real node (kubelet, kube-proxy, containerd, CNI plugins,
#   CoreDNS from the Go module proxy; runc and nft from Debian's packages, unpacked into the
#   cache) and the operator image's Debian base.
#
#   tools/install.sh            install everything that is missing (idempotent, seconds when warm)
#   tools/install.sh k8s kafka  install only the named components
#   tools/install.sh --print-dir
#   tools/install.sh --print-image-base   the unpacked Debian base of the operator image
#   tools/install.sh --print-gitops       the GitOps checker (tools/gitops) built from this tree
#   tools/install.sh --print-pulsar       the Pulsar standalone directory (libs/, classpath)
#   tools/install.sh --print-pulsar-checker  the compiled tests' Pulsar client (tools/pulsar/client)
#
# Cache: $EXACTLY_TOOLS_DIR (default ~/.cache/exactly), one directory per component and version,
# e.g. ~/.cache/exactly/k8s-v1.37.2/bin/kube-apiserver. A directory only appears once complete
# (built in a temporary directory, then renamed), so an interrupted install never looks finished.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

TOOLS_DIR=${EXACTLY_TOOLS_DIR:-$HOME/.cache/exactly}
export GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

need() {
  local cmd=$1 why=$2
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found: $why"
}

# Runs a long command with its output in a log file, printing a heartbeat every 30 s so a person
# (or CI) sees that the first, cold build is progressing. On failure, shows the log's tail.
run_logged() {
  local label=$1 logfile=$2; shift 2
  local start=$SECONDS
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "  ... $label: $((SECONDS - start))s, $(wc -l <"$logfile") log lines (go builds print one per package)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 40 "$logfile" >&2
    die "$label failed after $((SECONDS - start))s; full log: $logfile"
  fi
  log "  $label done in $((SECONDS - start))s"
}

# install_component NAME DIR BUILD_FUNCTION: skips a complete DIR, else builds into DIR.tmp.
install_component() {
  local name=$1 dir=$2 build=$3
  if [ -f "$dir/.complete" ]; then
    log "$name: present ($dir)"
    return
  fi
  log "$name: installing into $dir"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp/bin"
  "$build" "$dir.tmp"
  date -u +%FT%TZ >"$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

# A throw-away Go module whose only job is to pin what we build (dependency replace lines of
# etcd and k8s.io/kubernetes are ignored in a dependency, so we restate what is needed here).
new_wrapper_module() {
  local dir=$1 name=$2
  mkdir -p "$dir"
  (cd "$dir" && rm -f go.mod go.sum && go mod init "local/$name" >/dev/null 2>&1)
}

# A wrapper module in $1 that can build k8s.io/kubernetes/cmd/* at K8S_VERSION.
k8s_wrapper_module() {
  local src=$1 minor patch
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  patch=$(echo "$K8S_VERSION" | cut -d. -f3)
  new_wrapper_module "$src" k8sbins
  cd "$src"
  # k8s.io/kubernetes requires every staging module at v0.0.0 and maps them to ./staging with
  # replace lines that do not apply to a dependency: pin each to its published v0.MINOR.PATCH.
  local upstream_gomod
  upstream_gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["GoMod"])')
  local staging
  staging=$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$upstream_gomod" | sort -u)
  [ -n "$staging" ] || die "found no staging modules in $upstream_gomod"
  for m in $staging; do
    go mod edit -replace="$m=$m@v0.$minor.$patch"
  done
  go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
  log "  resolving k8s.io/kubernetes v$K8S_VERSION and $(echo "$staging" | wc -w) staging modules"
}

# go-builds k8s.io/kubernetes/cmd/<each of $3> into $1/bin with release version stamps.
build_k8s_cmds() {
  local out=$1 src=$2 cmds=$3 minor pkgs="" ld="-s -w"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  k8s_wrapper_module "$src"
  for c in $cmds; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  # shellcheck disable=SC2086
  run_logged "go get (module download)" "$src/get.log" go get $pkgs
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "  compiling $cmds (cold: about 15-25 minutes on 2 cores; the node's two reuse that cache)"
  # shellcheck disable=SC2086
  run_logged "go build ($cmds)" "$src/build.log" go build -v -ldflags "$ld" -o "$out/bin/" $pkgs
}

build_k8s() {
  build_k8s_cmds "$1" "$TOOLS_DIR/src/k8s-v$K8S_VERSION" "kube-apiserver kube-controller-manager kube-scheduler kubectl"
  "$1/bin/kube-apiserver" --version >&2
}

# The real node's Kubernetes part: kubelet and kube-proxy at the control plane's version.
build_kubelet() {
  build_k8s_cmds "$1" "$TOOLS_DIR/src/kubelet-v$K8S_VERSION" "kubelet kube-proxy"
  "$1/bin/kubelet" --version >&2
}

# containerd 2 with its CRI plugin, ctr, and the runc shim; pure Go (no btrfs, which needs cgo).
build_containerd() {
  local out=$1 src="$TOOLS_DIR/src/containerd-v$CONTAINERD_VERSION"
  local p=github.com/containerd/containerd/v2
  local ld="-s -w -X $p/version.Version=v$CONTAINERD_VERSION -X $p/version.Revision=release"
  ld="$ld -X $p/version.Package=$p"
  new_wrapper_module "$src" containerdbins
  cd "$src"
  run_logged "go get containerd" "$src/get.log" go get "$p/cmd/containerd@v$CONTAINERD_VERSION" \
    "$p/cmd/ctr@v$CONTAINERD_VERSION" "$p/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION"
  run_logged "go build containerd, ctr" "$src/build.log" go build -v -tags "urfave_cli_no_docs no_btrfs" \
    -ldflags "$ld" -o "$out/bin/" "$p/cmd/containerd" "$p/cmd/ctr"
  run_logged "go build containerd-shim-runc-v2" "$src/build-shim.log" go build -v \
    -tags "urfave_cli_no_docs no_btrfs no_grpc" -ldflags "$ld" -o "$out/bin/" "$p/cmd/containerd-shim-runc-v2"
  "$out/bin/containerd" --version >&2
}

# The CNI plugins the node's pod network uses.
build_cni() {
  local out=$1 src="$TOOLS_DIR/src/cni-plugins-v$CNI_PLUGINS_VERSION"
  local m=github.com/containernetworking/plugins pkgs=""
  for c in main/bridge main/loopback ipam/host-local meta/portmap; do pkgs="$pkgs $m/plugins/$c"; done
  new_wrapper_module "$src" cnibins
  cd "$src"
  local versioned=""
  for p in $pkgs; do versioned="$versioned $p@v$CNI_PLUGINS_VERSION"; done
  # shellcheck disable=SC2086
  run_logged "go get cni plugins" "$src/get.log" go get $versioned
  # shellcheck disable=SC2086
  run_logged "go build cni plugins" "$src/build.log" go build -v \
    -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v$CNI_PLUGINS_VERSION" \
    -o "$out/bin/" $pkgs
}

# CoreDNS, the cluster DNS of the real node (its default plugin set).
build_coredns() {
  local out=$1 src="$TOOLS_DIR/src/coredns-v$COREDNS_VERSION"
  new_wrapper_module "$src" corednsbin
  cd "$src"
  run_logged "go get coredns" "$src/get.log" go get "github.com/coredns/coredns@v$COREDNS_VERSION"
  run_logged "go build coredns" "$src/build.log" go build -v -ldflags "-s -w" -o "$out/bin/coredns" \
    github.com/coredns/coredns
  "$out/bin/coredns" -version >&2
}

# Debian packages ($DEBIAN_*_PACKAGES, name=version) downloaded and unpacked into $1/root, never
# installed on the host; $1/debs keeps the .deb files the unpacked tree came from.
build_debs() {
  local out=$1 packages=$2
  mkdir -p "$out/debs" "$out/root"
  # shellcheck disable=SC2086
  (cd "$out/debs" && run_logged "apt-get download" "$out/apt.log" apt-get download $packages)
  for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/root"; done
  log "  unpacked $(ls "$out/debs" | wc -l) packages"
}
build_node_debs() { build_debs "$1" "$DEBIAN_NODE_PACKAGES"; "$1/root/usr/sbin/runc" --version >&2; }
build_image_debs() { build_debs "$1" "$DEBIAN_IMAGE_PACKAGES"; }

# The node's pinned sandbox image, built from tools/node/pause.c (static) by tools/image/build.py.
build_node_images() {
  local out=$1
  cc -static -Os -s -o "$out/bin/pause" "$here/node/pause.c"
  python3 "$here/image/build.py" --out "$out/pause.oci.tar" --ref "$PAUSE_IMAGE" \
    --file "$out/bin/pause:/pause" --entrypoint '["/pause"]' --user 65535:65535 >&2
}

# The Kafka image provisioned clusters run on the real node: Debian's glibc, libstdc++ and a
# static busybox (the start script's sh, sed, cat), a JRE jlink'd from the machine's JDK, the
# Kafka jars and the upstream image's entry points (tools/kafka/image).
JRE_MODULES=java.base,java.compiler,java.desktop,java.instrument,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.transaction.xa,java.xml,jdk.crypto.ec,jdk.crypto.cryptoki,jdk.management,jdk.naming.dns,jdk.security.auth,jdk.unsupported,jdk.zipfs
build_kafka_image() {
  local out=$1 java_home
  java_home=$(dirname "$(dirname "$(readlink -f "$(command -v javac || command -v java)")")")
  [ -d "$java_home/jmods" ] || die "no jmods in $java_home: install the JDK's jmods (Debian: openjdk-17-jmods)"
  build_debs "$out" "$DEBIAN_KAFKA_IMAGE_PACKAGES"
  local links=""
  for tool in sh sed cat basename ls mkdir rm; do links="$links --symlink /bin/$tool:busybox"; done
  "$java_home/bin/jlink" --add-modules "$JRE_MODULES" --strip-debug --no-man-pages --no-header-files \
    --compress=2 --output "$out/jre"
  # shellcheck disable=SC2086
  python3 "$here/image/build.py" --out "$out/kafka.oci.tar" --ref "$KAFKA_IMAGE" --base "$out/root" \
    --tree "$out/jre:/opt/java" --tree "$TOOLS_DIR/kafka-$KAFKA_VERSION/libs:/opt/kafka/libs" \
    --file "$here/kafka/image/kafka-server-start.sh:/opt/kafka/bin/kafka-server-start.sh" \
    --file "$here/kafka/image/kafka-storage.sh:/opt/kafka/bin/kafka-storage.sh" \
    --file "$here/kafka/image/log4j2.properties:/opt/kafka/config/log4j2.properties:644" \
    $links --user 1000:1000 >&2
  rm -rf "$out/jre" "$out/root"
}
kafka_image_key() {
  { echo "$DEBIAN_KAFKA_IMAGE_PACKAGES $KAFKA_VERSION $KAFKA_IMAGE $JRE_MODULES"; java -version 2>&1
    declare -f build_kafka_image
    cat "$here"/kafka/image/* "$here/image/build.py"; } | sha256sum | cut -c1-12
}

# A short, stable key for a list of pinned packages (the cache directory's name).
key_of() { printf '%s' "$*" | sha256sum | cut -c1-12; }
node_images_key() {
  { cat "$here/node/pause.c" "$here/image/build.py"; declare -f build_node_images; } | sha256sum | cut -c1-12
}

build_etcd() {
  local out=$1 src="$TOOLS_DIR/src/etcd-v$ETCD_VERSION"
  new_wrapper_module "$src" etcdbin
  cd "$src"
  run_logged "go get etcd" "$src/get.log" go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  run_logged "go build etcd" "$src/build.log" go build -v -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
  "$out/bin/etcd" --version >&2
}

build_kwok() {
  local out=$1 src="$TOOLS_DIR/src/kwok-v$KWOK_VERSION"
  new_wrapper_module "$src" kwokbin
  cd "$src"
  run_logged "go get kwok" "$src/get.log" go get "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  run_logged "go build kwok" "$src/build.log" go build -v \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    -o "$out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok
  # kwok does nothing without Stage policies: take the ones its release ships (nodes become
  # Ready and heartbeat with a lease, pods become Running/Ready, PVCs of the kwok-volume class
  # bind) from the same pinned module, so they always match the binary.
  local moddir stages="$out/stages.yaml"
  moddir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  : >"$stages"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml \
           volume/fast/pv-bind.yaml volume/fast/pv-delete.yaml volume/fast/pvc-provision.yaml \
           volume/fast/pvc-delete.yaml; do
    [ -f "$moddir/kustomize/stage/$f" ] || die "kwok stage $f missing from $moddir"
    { echo "---"; cat "$moddir/kustomize/stage/$f"; } >>"$stages"
  done
  cp "$moddir/kustomize/stage/volume/fast/storage-class.yaml" "$out/storage-class.yaml"
  "$out/bin/kwok" --version >&2 || true
}

build_helm() {
  local out=$1 src="$TOOLS_DIR/src/helm-v$HELM_VERSION"
  local k8s_minor
  k8s_minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  new_wrapper_module "$src" helmbin
  cd "$src"
  run_logged "go get helm" "$src/get.log" go get "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  # Release builds stamp the version and the Kubernetes version `helm template` assumes.
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld="$ld -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ld="$ld -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  run_logged "go build helm" "$src/build.log" go build -v -ldflags "$ld" -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm
  "$out/bin/helm" version >&2
}

# The GitOps checker (tools/gitops): kstatus and Argo CD's Lua runtime, pinned by its go.mod and
# go.sum (the versions in versions.env must be those), cached by a digest of its sources.
build_gitops() {
  local out=$1 mod="$here/gitops/go.mod"
  grep -q "sigs.k8s.io/cli-utils v$CLI_UTILS_VERSION\$" "$mod" || die "$mod does not pin sigs.k8s.io/cli-utils v$CLI_UTILS_VERSION (tools/versions.env)"
  grep -q "github.com/yuin/gopher-lua v$GOPHER_LUA_VERSION\$" "$mod" || die "$mod does not pin github.com/yuin/gopher-lua v$GOPHER_LUA_VERSION (tools/versions.env)"
  cd "$here/gitops"
  run_logged "go build exactly-gitops" "$out/build.log" go build -v -mod=readonly -ldflags "-s -w" -o "$out/bin/exactly-gitops" .
}
gitops_dir() {
  echo "$TOOLS_DIR/gitops-$({ cat "$here"/gitops/go.mod "$here"/gitops/go.sum "$here"/gitops/*.go; declare -f build_gitops; } | sha256sum | cut -c1-12)"
}

build_kafka() {
  local out=$1
  mkdir -p "$out/libs"
  run_logged "maven (kafka $KAFKA_VERSION jars)" "$out/maven.log" \
    mvn -B -f "$here/kafka/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j2.version="$LOG4J2_VERSION" \
    -DoutputDirectory="$out/libs" -DincludeScope=runtime \
    dependency:copy-dependencies
  ls "$out/libs/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "kafka jar missing after maven"
  log "  $(ls "$out/libs" | wc -l) jars in $out/libs"
}

# Apache Pulsar standalone (tools/pulsar): pulsar-broker's runtime closure and a log4j2 binding
# copied into $1/libs, and $1/classpath, those jars in Maven's order joined by ':' with their
# final paths (the directory is renamed from $1 = <dir>.tmp once complete). The harness
# (tests/src/pulsar.rs) runs org.apache.pulsar.PulsarStandaloneStarter with it and
# tools/pulsar/standalone.conf. Cached by a digest of the pom, the pins and this function.
build_pulsar() {
  local out=$1 final=${1%.tmp} version
  version=$(pulsar_version)
  mkdir -p "$out/libs"
  run_logged "maven (pulsar $version jars)" "$out/maven.log" \
    mvn -B -f "$here/pulsar/pom.xml" \
    -Dpulsar.version="$version" -Dlog4j2.version="$LOG4J2_VERSION" \
    -DoutputDirectory="$out/libs" -DincludeScope=runtime \
    -Dmdep.outputFile="$out/classpath" -Dmdep.prefix="$final/libs" \
    dependency:copy-dependencies dependency:build-classpath
  ls "$out/libs/pulsar-broker-$version.jar" >/dev/null || die "pulsar-broker jar missing after maven"
  # Every classpath entry must be a jar just copied (same names in both goals).
  local jar missing=0
  while IFS= read -r jar; do
    [ -f "$out/libs/$(basename "$jar")" ] || { log "  not copied: $jar"; missing=1; }
  done < <(tr ':' '\n' <"$out/classpath")
  [ "$missing" = 0 ] || die "the classpath names jars maven did not copy; see $out/maven.log"
  log "  $(ls "$out/libs" | wc -l) jars, $(du -sh "$out/libs" | cut -f1)"
}
# The tests' Java client for Pulsar (tools/pulsar/client/PulsarCheck.java; tests/src/pulsar_check.rs
# runs it): compiled with plain javac against the standalone's classpath into $1/classes, with
# its log4j2.properties beside the class. It lives in the Pulsar directory, as checker-<digest>
# of its sources, javac's version and this function, so an edit of the source recompiles and
# new jars (a new Pulsar directory) do too. Older checkers stay (a few kB each): a test run of
# another checkout may be using one.
build_pulsar_checker() {
  local out=$1
  javac -Xlint:all -cp "$(cat "$(pulsar_dir)/classpath")" -d "$out/classes" "$here/pulsar/client/PulsarCheck.java"
  cp "$here/pulsar/client/log4j2.properties" "$out/classes/"
  log "  compiled $(cd "$out/classes" && ls -- *.class | paste -sd' ' -)"
}
pulsar_checker_dir() {
  echo "$(pulsar_dir)/checker-$({ cat "$here"/pulsar/client/*; javac -version 2>&1
    declare -f build_pulsar_checker; } | sha256sum | cut -c1-12)"
}
pulsar_version() { sed -n 's/^PULSAR_VERSION=//p' "$here/pulsar/version.env"; }
pulsar_dir() {
  echo "$TOOLS_DIR/pulsar-$(pulsar_version)-$({ cat "$here/pulsar/pom.xml" "$here/pulsar/version.env"
    echo "$LOG4J2_VERSION"; declare -f build_pulsar; } | sha256sum | cut -c1-12)"
}

check_prerequisites() {
  local want=$1
  case " $want " in *" k8s "*|*" etcd "*|*" kwok "*|*" helm "*|*" node "*|*" gitops "*)
    need go "install Go 1.26 or newer (https://go.dev/doc/install)"
    need python3 "used to read the Kubernetes release's go.mod"
    local gov
    gov=$(go env GOVERSION | sed 's/^go//')
    case "$gov" in 1.2[6-9]*|1.[3-9]*) ;; *) die "Go $gov is too old: the pinned releases need Go >= 1.26" ;; esac
  esac
  case " $want " in *" node "*|*" image-base "*|*" kafka-image "*)
    need cc "builds the node's static pause binary"
    need apt-get "the node's runc and nft, and the image's base, are Debian bookworm packages"
    need dpkg-deb "unpacks those packages into the cache"
  esac
  case " $want " in *" kafka "*|*" pulsar "*)
    need java "install a JDK 17 or newer (Kafka 4 and Pulsar 4.0 need it)"
    need mvn "install Maven (it resolves the Kafka and Pulsar jars from Maven Central)"
  esac
  case " $want " in *" pulsar "*)
    need javac "install a JDK 17 or newer (it compiles the tests' Pulsar client, tools/pulsar/client)"
  esac
}

main() {
  if [ "${1:-}" = "--print-dir" ]; then echo "$TOOLS_DIR"; exit 0; fi
  if [ "${1:-}" = "--print-gitops" ]; then echo "$(gitops_dir)/bin/exactly-gitops"; exit 0; fi
  if [ "${1:-}" = "--print-pulsar" ]; then pulsar_dir; exit 0; fi
  if [ "${1:-}" = "--print-pulsar-checker" ]; then echo "$(pulsar_checker_dir)/classes"; exit 0; fi
  if [ "${1:-}" = "--print-image-base" ]; then
    echo "$TOOLS_DIR/image-debs-$(key_of "$DEBIAN_IMAGE_PACKAGES")/root"; exit 0
  fi
  local want="${*:-k8s etcd kwok helm kafka node image-base kafka-image gitops pulsar}"
  check_prerequisites "$want"
  mkdir -p "$TOOLS_DIR"
  local start=$SECONDS
  for c in $want; do
    case "$c" in
      k8s) install_component "kubernetes v$K8S_VERSION" "$TOOLS_DIR/k8s-v$K8S_VERSION" build_k8s ;;
      etcd) install_component "etcd v$ETCD_VERSION" "$TOOLS_DIR/etcd-v$ETCD_VERSION" build_etcd ;;
      kwok) install_component "kwok v$KWOK_VERSION" "$TOOLS_DIR/kwok-v$KWOK_VERSION" build_kwok ;;
      helm) install_component "helm v$HELM_VERSION" "$TOOLS_DIR/helm-v$HELM_VERSION" build_helm ;;
      kafka) install_component "kafka $KAFKA_VERSION" "$TOOLS_DIR/kafka-$KAFKA_VERSION" build_kafka ;;
      node)
        install_component "kubelet, kube-proxy v$K8S_VERSION" "$TOOLS_DIR/kubelet-v$K8S_VERSION" build_kubelet
        install_component "containerd v$CONTAINERD_VERSION" "$TOOLS_DIR/containerd-v$CONTAINERD_VERSION" build_containerd
        install_component "cni plugins v$CNI_PLUGINS_VERSION" "$TOOLS_DIR/cni-plugins-v$CNI_PLUGINS_VERSION" build_cni
        install_component "coredns v$COREDNS_VERSION" "$TOOLS_DIR/coredns-v$COREDNS_VERSION" build_coredns
        install_component "runc, nft (Debian)" "$TOOLS_DIR/node-debs-$(key_of "$DEBIAN_NODE_PACKAGES")" build_node_debs
        install_component "node images (pause)" "$TOOLS_DIR/node-images-$(node_images_key)" build_node_images
        ;;
      kafka-image)
        install_component "kafka image" "$TOOLS_DIR/kafka-image-$(kafka_image_key)" build_kafka_image
        ;;
      pulsar)
        install_component "pulsar $(pulsar_version) (standalone)" "$(pulsar_dir)" build_pulsar
        install_component "pulsar checker (tools/pulsar/client)" "$(pulsar_checker_dir)" build_pulsar_checker
        ;;
      gitops) install_component "exactly-gitops (kstatus v$CLI_UTILS_VERSION, gopher-lua v$GOPHER_LUA_VERSION)" "$(gitops_dir)" build_gitops ;;
      image-base)
        install_component "image base (Debian)" "$TOOLS_DIR/image-debs-$(key_of "$DEBIAN_IMAGE_PACKAGES")" build_image_debs
        ;;
      *) die "unknown component '$c' (k8s, etcd, kwok, helm, kafka, node, image-base, kafka-image, gitops, pulsar)" ;;
    esac
  done
  log "all present in $TOOLS_DIR ($((SECONDS - start))s)"
}

main "$@"
