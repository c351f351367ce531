// PulsarCheck: the tests' Java client for Apache Pulsar (tests/src/pulsar_check.rs runs it).
//
// The Rust `pulsar` crate has neither transactions nor chosen sequence ids, and exactly-once on
// Pulsar rests on both, so the proofs run Pulsar's own Java client (pulsar-client-original, from
// the standalone's classpath). Compiled by `tools/install.sh pulsar` with plain javac:
//
//   java -cp "<checker dir>:$(cat <pulsar dir>/classpath)" PulsarCheck <sub-command> [options]
//
// (`tools/install.sh --print-pulsar-checker` names the checker dir; putting it first on the
// classpath makes its log4j2.properties win: the client's own log goes to stderr, WARN and up.)
//
// Each sub-command prints its result as one JSON object on a line of stdout; an error goes to
// stderr with exit code 1 (2 for bad arguments). A deliberate crash (`--exit-after`, `--end open`)
// prints its line first, then halts the JVM with exit code 137 (no close, no flush).

import java.io.FileReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.Producer;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.PulsarClientException;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionType;
import org.apache.pulsar.client.api.transaction.Transaction;
import org.apache.pulsar.client.api.transaction.TxnID;

public final class PulsarCheck {
    /** The exit code of a deliberate crash, as a SIGKILL'd process's shell status. */
    static final int HALT = 137;

    /**
     * Keys of a producer config file that configure the client (`PulsarClient.builder()`); every
     * other key configures the producer. Both builders refuse keys they do not know.
     */
    static final Set<String> CLIENT_KEYS = Set.of("serviceUrl", "authPluginClassName", "authParams");

    public static void main(String[] argv) {
        if (argv.length == 0) {
            usage("no sub-command");
        }
        Map<String, String> args = options(argv);
        try {
            switch (argv[0]) {
                case "produce" -> produce(args);
                case "read" -> read(args);
                case "txn" -> txn(args);
                case "hold" -> hold(args);
                default -> usage("unknown sub-command " + argv[0]);
            }
            System.exit(0);
        } catch (Exception e) {
            System.err.println("PulsarCheck " + argv[0] + ": " + e);
            for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
                System.err.println("  caused by: " + cause);
            }
            System.exit(1);
        }
    }

    // produce --config FILE --topic T --from A --to B [--exit-after K]
    //
    // A producer configured as the operator renders it (FILE, Java properties) sends "m-<i>" with
    // key "k-<i>" and sequence id i for i in A..=B, each send waiting for its receipt. With
    // --exit-after K it crashes right after the K-th receipt: what a worker killed mid-stream
    // leaves behind, for a restart under the same producerName to resend from an earlier point.
    // Prints {"sent":N,"lastSequenceId":X,"lastSequenceIdAtStart":S} (and "halted":137 on a
    // crash): S is what the broker told the producer when it connected (its deduplication state
    // for this producerName, -1 if none), X is the producer's last acknowledged sequence id.
    static void produce(Map<String, String> args) throws Exception {
        Properties file = new Properties();
        try (Reader reader = new FileReader(required(args, "--config"), StandardCharsets.UTF_8)) {
            file.load(reader);
        }
        Map<String, Object> clientConf = new HashMap<>();
        Map<String, Object> producerConf = new HashMap<>();
        for (String key : file.stringPropertyNames()) {
            (CLIENT_KEYS.contains(key) ? clientConf : producerConf).put(key, file.getProperty(key));
        }
        if (!clientConf.containsKey("serviceUrl")) {
            throw new IllegalArgumentException("the config file has no serviceUrl");
        }
        String topic = required(args, "--topic");
        long from = number(args, "--from", null);
        long to = number(args, "--to", null);
        long exitAfter = number(args, "--exit-after", -1L);

        try (PulsarClient client = PulsarClient.builder().loadConf(clientConf).build()) {
            Producer<byte[]> producer = createProducer(client, producerConf, topic);
            long atStart = producer.getLastSequenceId();
            long sent = 0;
            for (long i = from; i <= to; i++) {
                producer.newMessage()
                        .key("k-" + i)
                        .value(("m-" + i).getBytes(StandardCharsets.UTF_8))
                        .sequenceId(i)
                        .send();
                sent++;
                if (sent == exitAfter) {
                    print(producedJson(sent, producer.getLastSequenceId(), atStart, true));
                    Runtime.getRuntime().halt(HALT);
                }
            }
            producer.flush();
            print(producedJson(sent, producer.getLastSequenceId(), atStart, false));
            producer.close();
        }
    }

    static String producedJson(long sent, long last, long atStart, boolean halted) {
        return "{\"sent\":" + sent + ",\"lastSequenceId\":" + last + ",\"lastSequenceIdAtStart\":" + atStart
                + (halted ? ",\"halted\":" + HALT : "") + "}";
    }

    /**
     * The producer; a restart right after a crash may find the broker still holding the old
     * connection's producer of the same name (ProducerBusy) for a moment: retried for 30 s.
     */
    static Producer<byte[]> createProducer(PulsarClient client, Map<String, Object> conf, String topic)
            throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            try {
                return client.newProducer().loadConf(conf).topic(topic).create();
            } catch (PulsarClientException.ProducerBusyException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                Thread.sleep(500);
            }
        }
    }

    // read --service-url U --topic T --subscription S [--idle-ms 3000]
    //
    // Everything the topic holds for subscription S (Exclusive; a new one starts at the earliest
    // message): receives until nothing arrives for idle-ms, acknowledging each message.
    // Only committed messages are delivered (an open transaction holds back what follows it).
    // Prints {"received":N,"distinct":D,"duplicates":[...],"payloads":[...]}: duplicates are
    // payloads seen more than once (the first 20), payloads the first 20 distinct ones in
    // arrival order.
    static void read(Map<String, String> args) throws Exception {
        long idleMs = number(args, "--idle-ms", 3000L);
        try (PulsarClient client = PulsarClient.builder().serviceUrl(required(args, "--service-url")).build();
                Consumer<byte[]> consumer = subscribe(client, args)) {
            Map<String, Integer> seen = new LinkedHashMap<>();
            long received = 0;
            Message<byte[]> message;
            while ((message = consumer.receive((int) idleMs, TimeUnit.MILLISECONDS)) != null) {
                received++;
                seen.merge(new String(message.getData(), StandardCharsets.UTF_8), 1, Integer::sum);
                consumer.acknowledge(message);
            }
            List<String> duplicates = new ArrayList<>();
            seen.forEach((payload, count) -> {
                if (count > 1 && duplicates.size() < 20) {
                    duplicates.add(payload);
                }
            });
            List<String> payloads = seen.keySet().stream().limit(20).toList();
            print("{\"received\":" + received + ",\"distinct\":" + seen.size() + ",\"duplicates\":"
                    + json(duplicates) + ",\"payloads\":" + json(payloads) + "}");
        }
    }

    // txn --service-url U --input T1 --subscription S --output T2 --count N
    //     --end commit|abort|open [--timeout-ms M]
    //
    // A consume-transform-produce step in ONE transaction (timeout M ms, default 60 000): receives
    // N messages from T1 on subscription S (Exclusive, earliest) and acknowledges them in the
    // transaction, sends "out-0".."out-<N-1>" to T2 in it, then commits, aborts, or (open) halts
    // with the transaction still open, as a worker crashing before its commit would; the
    // coordinator aborts it once M ms have passed.
    // Prints {"txn":"<most>:<least>","end":"...","received":[payloads]} before ending or halting;
    // exit code 0 means the commit or abort succeeded.
    static void txn(Map<String, String> args) throws Exception {
        String end = required(args, "--end");
        if (!List.of("commit", "abort", "open").contains(end)) {
            throw new IllegalArgumentException("--end must be commit, abort or open, not " + end);
        }
        long count = number(args, "--count", null);
        long timeoutMs = number(args, "--timeout-ms", 60_000L);
        try (PulsarClient client = PulsarClient.builder()
                .serviceUrl(required(args, "--service-url"))
                .enableTransaction(true)
                .build();
                Consumer<byte[]> consumer = subscribe(client, args);
                Producer<byte[]> producer = client.newProducer()
                        .topic(required(args, "--output"))
                        .sendTimeout(0, TimeUnit.SECONDS)
                        .create()) {
            Transaction txn = client.newTransaction()
                    .withTransactionTimeout(timeoutMs, TimeUnit.MILLISECONDS)
                    .build()
                    .get();
            List<String> received = new ArrayList<>();
            for (long i = 0; i < count; i++) {
                Message<byte[]> message = consumer.receive(30, TimeUnit.SECONDS);
                if (message == null) {
                    throw new IllegalStateException("received " + i + " of " + count + " messages in 30 s");
                }
                consumer.acknowledgeAsync(message.getMessageId(), txn).get();
                received.add(new String(message.getData(), StandardCharsets.UTF_8));
            }
            for (long i = 0; i < count; i++) {
                producer.newMessage(txn).value(("out-" + i).getBytes(StandardCharsets.UTF_8)).send();
            }
            TxnID id = txn.getTxnID();
            print("{\"txn\":\"" + id.getMostSigBits() + ":" + id.getLeastSigBits() + "\",\"end\":\"" + end
                    + "\",\"received\":" + json(received) + "}");
            switch (end) {
                case "commit" -> txn.commit().get();
                case "abort" -> txn.abort().get();
                default -> Runtime.getRuntime().halt(HALT);
            }
        }
    }

    // hold --service-url U --topic T --subscription S --type Exclusive|Failover|Shared|Key_Shared
    //      --receive N --ack true|false --hold-ms M
    //
    // A consumer of the given subscription type that receives N messages (each within 30 s),
    // acknowledging them only with --ack true, then stays connected for M ms and closes: what
    // an application consuming, or stalled, looks like to the broker's stats.
    // Prints {"received":N,"heldMs":M} once it has closed.
    static void hold(Map<String, String> args) throws Exception {
        SubscriptionType type = SubscriptionType.valueOf(required(args, "--type"));
        long count = number(args, "--receive", null);
        boolean ack = Boolean.parseBoolean(required(args, "--ack"));
        long holdMs = number(args, "--hold-ms", null);
        try (PulsarClient client = PulsarClient.builder().serviceUrl(required(args, "--service-url")).build();
                Consumer<byte[]> consumer = client.newConsumer()
                        .topic(required(args, "--topic"))
                        .subscriptionName(required(args, "--subscription"))
                        .subscriptionType(type)
                        .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                        .subscribe()) {
            for (long i = 0; i < count; i++) {
                Message<byte[]> message = consumer.receive(30, TimeUnit.SECONDS);
                if (message == null) {
                    throw new IllegalStateException("received " + i + " of " + count + " messages in 30 s");
                }
                if (ack) {
                    consumer.acknowledge(message);
                }
            }
            Thread.sleep(holdMs);
        }
        print("{\"received\":" + count + ",\"heldMs\":" + holdMs + "}");
    }

    /** An Exclusive consumer of --topic (or --input) on --subscription, new ones at the earliest. */
    static Consumer<byte[]> subscribe(PulsarClient client, Map<String, String> args) throws Exception {
        String topic = args.containsKey("--input") ? args.get("--input") : required(args, "--topic");
        return client.newConsumer()
                .topic(topic)
                .subscriptionName(required(args, "--subscription"))
                .subscriptionType(SubscriptionType.Exclusive)
                .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                .subscribe();
    }

    // --- small helpers ---------------------------------------------------------------------

    /** One line of stdout, flushed (a halt follows some). */
    static void print(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static Map<String, String> options(String[] argv) {
        Map<String, String> out = new HashMap<>();
        for (int i = 1; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                usage("expected --option value, got " + argv[i]);
            }
            out.put(argv[i], argv[i + 1]);
        }
        return out;
    }

    static String required(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null) {
            usage("missing " + name);
        }
        return value;
    }

    static long number(Map<String, String> args, String name, Long fallback) {
        String value = fallback == null ? required(args, name) : args.get(name);
        if (value == null) {
            return fallback;
        }
        try {
            return Long.parseLong(value);
        } catch (NumberFormatException e) {
            usage(name + " is not a number: " + value);
            return 0;
        }
    }

    static void usage(String problem) {
        System.err.println("PulsarCheck: " + problem + "\nusage:\n"
                + "  produce --config FILE --topic T --from A --to B [--exit-after K]\n"
                + "  read --service-url U --topic T --subscription S [--idle-ms 3000]\n"
                + "  txn --service-url U --input T1 --subscription S --output T2 --count N"
                + " --end commit|abort|open [--timeout-ms M]\n"
                + "  hold --service-url U --topic T --subscription S --type Exclusive|Failover|Shared|Key_Shared"
                + " --receive N --ack true|false --hold-ms M");
        System.exit(2);
    }

    /** A JSON array of strings. */
    static String json(List<String> values) {
        StringBuilder out = new StringBuilder("[");
        for (String value : values) {
            if (out.length() > 1) {
                out.append(',');
            }
            out.append('"');
            for (char c : value.toCharArray()) {
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            out.append('"');
        }
        return out.append(']').toString();
    }
}
