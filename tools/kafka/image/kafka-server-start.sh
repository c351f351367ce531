#!/bin/sh
# The environment's Kafka image (tools/install.sh kafka-image): the entry points of the official
# apache/kafka image's /opt/kafka/bin that the operator's start script calls, on a jlink'd JRE and
# the Maven-resolved jars. Usage as upstream: kafka-server-start.sh server.properties
# shellcheck disable=SC2086
exec /opt/java/bin/java ${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp '/opt/kafka/libs/*' kafka.Kafka "$@"
