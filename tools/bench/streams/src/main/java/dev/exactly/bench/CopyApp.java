package dev.exactly.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams peer of `make bench-pipeline`: copies every record of one topic to another,
 * byte for byte (key, value; Streams forwards the input timestamp), with
 * {@code processing.guarantee} as given (the benchmark uses exactly_once_v2).
 *
 * <pre>
 * java -cp ... dev.exactly.bench.CopyApp BOOTSTRAP INPUT OUTPUT APPLICATION_ID THREADS
 *     COMMIT_INTERVAL_MS GUARANTEE STATE_DIR
 * </pre>
 *
 * Prints {@code STATE <state>} lines on stdout as the application changes state (RUNNING once
 * its tasks are assigned) and stops cleanly on SIGTERM (the shutdown hook closes it, committing
 * the open transaction).
 */
public final class CopyApp {
    private CopyApp() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 8) {
            System.err.println("usage: CopyApp BOOTSTRAP INPUT OUTPUT APPLICATION_ID THREADS"
                + " COMMIT_INTERVAL_MS GUARANTEE STATE_DIR");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[4]));
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(args[5]));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args[6]);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[7]);
        // A single-broker environment: internal topics (none for a stateless copy) at RF 1.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(args[1], Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .to(args[2], Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            done.countDown();
        }));
        streams.start();
        done.await();
        // ERROR: exit non-zero so the benchmark reports it rather than waiting for output.
        if (streams.state() == KafkaStreams.State.ERROR) {
            streams.close(Duration.ofSeconds(5));
            System.exit(1);
        }
        TimeUnit.MILLISECONDS.sleep(10);
    }
}
