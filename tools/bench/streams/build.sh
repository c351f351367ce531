#!/usr/bin/env bash
# Builds the Kafka Streams copy application of `make bench-pipeline` and prints its Java
# classpath on stdout (everything else goes to stderr).
#
# The jars are kafka-streams at the broker's version (KAFKA_VERSION in tools/versions.env) and
# their runtime closure, from Maven Central through Maven's local repository (so a second build,
# or one without network once ~/.m2 holds them, needs nothing from outside). CopyApp.java is
# compiled with javac. The result is cached in
#   $EXACTLY_TOOLS_DIR/bench-streams-<kafka version>-<hash of this directory's sources>/
# and only appears once complete (built in <dir>.tmp, then renamed), like tools/install.sh does.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../versions.env
. "$here/../../versions.env"
TOOLS_DIR=${EXACTLY_TOOLS_DIR:-$HOME/.cache/exactly}

log() { printf '[bench-streams] %s\n' "$*" >&2; }
die() { printf '[bench-streams] error: %s\n' "$*" >&2; exit 1; }

command -v java >/dev/null || die "'java' not found: install a JDK 17 or newer"

hash=$(cd "$here" && find build.sh pom.xml src -type f | LC_ALL=C sort | xargs sha256sum |
  sha256sum | cut -c1-12)
dir="$TOOLS_DIR/bench-streams-$KAFKA_VERSION-$hash"
classpath="$dir/bench-streams.jar:$dir/libs/*"

if [ -f "$dir/.complete" ]; then
  log "present ($dir)"
  echo "$classpath"
  exit 0
fi

command -v mvn >/dev/null || die "'mvn' not found: install Maven (it resolves kafka-streams)"
command -v javac >/dev/null || die "'javac' not found: install a JDK 17 or newer"
log "building kafka-streams $KAFKA_VERSION copy app into $dir"
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp/libs" "$dir.tmp/classes"
if ! mvn -B -q -f "$here/pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j2.version="$LOG4J2_VERSION" \
    -DoutputDirectory="$dir.tmp/libs" -DincludeScope=runtime \
    dependency:copy-dependencies >"$dir.tmp/maven.log" 2>&1; then
  tail -n 30 "$dir.tmp/maven.log" >&2
  die "maven failed; full log: $dir.tmp/maven.log"
fi
ls "$dir.tmp/libs/kafka-streams-$KAFKA_VERSION.jar" >/dev/null ||
  die "kafka-streams-$KAFKA_VERSION.jar missing after maven"
javac --release 17 -Xlint:all -Werror -cp "$dir.tmp/libs/*" -d "$dir.tmp/classes" \
  $(find "$here/src/main/java" -name '*.java')
cp -r "$here/src/main/resources/." "$dir.tmp/classes/"
jar --create --file "$dir.tmp/bench-streams.jar" -C "$dir.tmp/classes" .
rm -rf "$dir.tmp/classes"
date -u +%FT%TZ >"$dir.tmp/.complete"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "built: $(ls "$dir/libs" | wc -l) jars in $dir/libs"
echo "$classpath"
