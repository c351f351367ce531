#!/bin/sh
# See kafka-server-start.sh. Usage as upstream: kafka-storage.sh format --config ... --cluster-id ...
exec /opt/java/bin/java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.tools.StorageTool "$@"
