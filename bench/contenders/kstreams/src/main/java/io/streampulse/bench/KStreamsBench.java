package io.streampulse.bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams contender: the same four tumbling windows per region as StreamPulse (1m, 5m,
 * 15m, 1h, 30 s grace), count / sum / min / max of fare in RocksDB window stores, {@code
 * suppress(untilWindowCloses)} so only final windows come out, produced to a results topic.
 *
 * <p>It speaks the harness's contender protocol (bench/contenders/report.py): the same command
 * line, a JSON report rewritten every second, and one line per final window, {@code size region
 * start count revenue fare_min fare_max}, which the harness checks against its reference. Those
 * lines are read back from the results topic by a {@code read_committed} consumer in this
 * process, so with exactly-once only committed results count (a transaction aborted after its
 * windows were produced would otherwise show up as duplicates), and a window's time is when it
 * became visible to a reader.
 *
 * <p>End of stream: Kafka Streams has no control records, so, as for the Quix Streams contender,
 * the end-of-stream record of each partition gets a timestamp past the end of the largest window
 * containing its event time plus the grace. It flows through the aggregation under its own key
 * ({@code end-of-stream}), which advances that task's stream time and so closes (and emits)
 * every window of its partition; its own windows are dropped from the results. That record is up
 * to 1 h 30 s ahead of the wall clock on the live workload, more than a Kafka 4 broker accepts by
 * default ({@code message.timestamp.after.max.ms}, 1 h): the changelogs and the results topic
 * (whose records carry it or windows flushed with it) are created without that bound.
 */
public final class KStreamsBench {
  static final String CONTROL_HEADER = "streampulse-control";
  static final String CONTROL_KEY = "end-of-stream";
  static final Duration GRACE = Duration.ofSeconds(30);
  static final Map<String, Duration> SIZES = new LinkedHashMap<>();

  static {
    SIZES.put("1m", Duration.ofMinutes(1));
    SIZES.put("5m", Duration.ofMinutes(5));
    SIZES.put("15m", Duration.ofMinutes(15));
    SIZES.put("1h", Duration.ofHours(1));
  }

  static final long CONTROL_SHIFT_MS = Duration.ofHours(1).plus(GRACE).toMillis();
  /**
   * Window store retention of the tuned variant. A window store is split into segments of
   * max(retention / 2, 1 min), each its own RocksDB instance; at the default retention (size +
   * grace) the 1m store opens and drops one per minute of event time, which on the backfill (30
   * days of event time) is tens of thousands of RocksDB opens per task. 72 h: a segment per 36 h
   * (the backfill then finished where 12 h still timed out; see docs/benchmarks.md).
   */
  static final Duration TUNED_RETENTION = Duration.ofHours(72);

  /** Topic config lifting the broker's bound on record timestamps ahead of its clock. */
  static final String TIMESTAMP_AHEAD = "message.timestamp.after.max.ms";

  static final JsonFactory JSON = new JsonFactory();
  static final ObjectMapper MAPPER = new ObjectMapper();

  private KStreamsBench() {}

  /** Count, sum, min and max of fare: 32 bytes in the store and the changelogs. */
  static final class Agg {
    long count;
    double revenue;
    double min = Double.POSITIVE_INFINITY;
    double max = Double.NEGATIVE_INFINITY;

    Agg add(double fare) {
      count++;
      revenue += fare;
      if (fare < min) min = fare;
      if (fare > max) max = fare;
      return this;
    }
  }

  static final class AggSerde implements Serde<Agg> {
    @Override
    public Serializer<Agg> serializer() {
      return (topic, a) ->
          a == null
              ? null
              : ByteBuffer.allocate(32)
                  .putLong(a.count)
                  .putDouble(a.revenue)
                  .putDouble(a.min)
                  .putDouble(a.max)
                  .array();
    }

    @Override
    public Deserializer<Agg> deserializer() {
      return (topic, bytes) -> {
        if (bytes == null) return null;
        ByteBuffer b = ByteBuffer.wrap(bytes);
        Agg a = new Agg();
        a.count = b.getLong();
        a.revenue = b.getDouble();
        a.min = b.getDouble();
        a.max = b.getDouble();
        return a;
      };
    }
  }

  static boolean isControl(Iterable<Header> headers) {
    for (Header h : headers) {
      if (h.key().equals(CONTROL_HEADER)) return true;
    }
    return false;
  }

  /** Event time is the record timestamp (the loader sets it); control records are moved. */
  static final class ControlShift implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      if (!isControl(record.headers())) return record.timestamp();
      long t = record.timestamp();
      try {
        Object value = record.value();
        if (value instanceof byte[] bytes) {
          t = MAPPER.readTree(bytes).path("event_time_ms").asLong(t);
        }
      } catch (IOException e) {
        // A control value we cannot read still ends the stream at its record timestamp.
      }
      return t + CONTROL_SHIFT_MS;
    }
  }

  /** The fare of an event, read with a streaming parser (no tree, no object per field). */
  static double fare(byte[] value) throws IOException {
    try (JsonParser p = JSON.createParser(value)) {
      if (p.nextToken() != JsonToken.START_OBJECT) throw new IOException("not an object");
      while (p.nextToken() == JsonToken.FIELD_NAME) {
        String name = p.currentName();
        JsonToken t = p.nextToken();
        if (name.equals("fare") && t.isNumeric()) return p.getDoubleValue();
        p.skipChildren();
      }
    }
    throw new IOException("no fare");
  }

  /** Counts what was consumed and turns each record into its fare (0 for the control record). */
  static final class Fares implements FixedKeyProcessor<String, byte[], Double> {
    private final Report report;
    private FixedKeyProcessorContext<String, Double> context;

    Fares(Report report) {
      this.report = report;
    }

    @Override
    public void init(FixedKeyProcessorContext<String, Double> context) {
      this.context = context;
    }

    @Override
    public void process(FixedKeyRecord<String, byte[]> record) {
      report.consumed();
      if (isControl(record.headers())) {
        context.forward(record.withValue(0.0));
        return;
      }
      try {
        double fare = fare(record.value());
        report.event();
        context.forward(record.withValue(fare));
      } catch (IOException | RuntimeException e) {
        // The bench's topics hold only valid events; anything else is not counted.
      }
    }
  }

  static Properties config(Args args) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, args.group);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
    p.put(StreamsConfig.STATE_DIR_CONFIG, args.dataDir.toString());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, args.guarantee);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    p.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    p.put(StreamsConfig.topicPrefix(TIMESTAMP_AHEAD), Long.toString(Long.MAX_VALUE));
    if (args.tuned) {
      // See docs/benchmarks.md ("Kafka Streams settings") for why each of these.
      p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 64L * 1024 * 1024);
      p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
      p.put(StreamsConfig.producerPrefix("transaction.timeout.ms"), 60_000);
      p.put(StreamsConfig.producerPrefix("batch.size"), 256 * 1024);
    }
    return p;
  }

  static Materialized<String, Agg, WindowStore<Bytes, byte[]>> store(
      String name, AggSerde serde, Args args) {
    Materialized<String, Agg, WindowStore<Bytes, byte[]>> m =
        Materialized.<String, Agg, WindowStore<Bytes, byte[]>>as(name)
            .withKeySerde(Serdes.String())
            .withValueSerde(serde);
    if (args.retention != null) return m.withRetention(args.retention);
    return args.tuned ? m.withRetention(TUNED_RETENTION) : m;
  }

  static StreamsBuilder topology(Args args, Report report, String results) {
    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, Double> fares =
        builder.stream(
                args.topic,
                Consumed.with(Serdes.String(), Serdes.ByteArray())
                    .withTimestampExtractor(new ControlShift()))
            .processValues(() -> new Fares(report));
    AggSerde aggSerde = new AggSerde();
    for (Map.Entry<String, Duration> size : SIZES.entrySet()) {
      String name = size.getKey();
      fares
          .groupByKey(Grouped.with(Serdes.String(), Serdes.Double()))
          .windowedBy(TimeWindows.ofSizeAndGrace(size.getValue(), GRACE))
          .aggregate(
              Agg::new, (region, fare, agg) -> agg.add(fare), store("trips-" + name, aggSerde, args))
          .suppress(
              Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                  .withName("final-" + name))
          .toStream()
          .filter((window, agg) -> !window.key().equals(CONTROL_KEY))
          .map(
              (window, agg) ->
                  KeyValue.pair(
                      name + " " + window.key() + " " + window.window().start(),
                      agg.count + " " + agg.revenue + " " + agg.min + " " + agg.max))
          .to(results, Produced.with(Serdes.String(), Serdes.String()));
    }
    return builder;
  }

  static void createTopic(Args args, String name) throws Exception {
    Map<String, Object> conf = new HashMap<>();
    conf.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
    try (Admin admin = Admin.create(conf)) {
      NewTopic topic =
          new NewTopic(name, args.partitions, (short) 1)
              .configs(Map.of(TIMESTAMP_AHEAD, Long.toString(Long.MAX_VALUE)));
      admin.createTopics(List.of(topic)).all().get();
    } catch (java.util.concurrent.ExecutionException e) {
      if (!(e.getCause() instanceof TopicExistsException)) throw e;
    }
  }

  /** Every committed final window of the results topic, from its start, into the report. */
  static void readResults(Args args, String results, Report report) {
    Map<String, Object> conf = new HashMap<>();
    conf.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
    conf.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    conf.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(conf, new StringDeserializer(), new StringDeserializer())) {
      List<TopicPartition> parts = new ArrayList<>();
      for (int p = 0; p < args.partitions; p++) parts.add(new TopicPartition(results, p));
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      while (true) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          report.window(r.key() + " " + r.value());
        }
      }
    } catch (RuntimeException e) {
      System.err.println("results reader stopped: " + e);
    }
  }

  public static void main(String[] argv) throws Exception {
    Args args = Args.parse(argv);
    Report report = new Report(args.report, args.windows);
    String results = args.group + ".results";
    createTopic(args, results);
    KafkaStreams streams =
        new KafkaStreams(topology(args, report, results).build(), config(args));
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(Duration.ofSeconds(10));
                  stopped.countDown();
                }));
    streams.setUncaughtExceptionHandler(
        e -> {
          System.err.println("stream thread failed: " + e);
          return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
              .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    streams.start();
    Thread reader = new Thread(() -> readResults(args, results, report), "results-reader");
    reader.setDaemon(true);
    reader.start();
    stopped.await();
  }

  /** The harness's contender command line, plus the two Kafka Streams choices. */
  static final class Args {
    String bootstrap;
    String topic;
    String group;
    int partitions;
    long records;
    long windows;
    Path dataDir;
    Path report;
    String guarantee = StreamsConfig.EXACTLY_ONCE_V2;
    boolean tuned;
    Duration retention;

    static Args parse(String[] argv) {
      Args a = new Args();
      for (int i = 0; i < argv.length; i++) {
        String flag = argv[i];
        switch (flag) {
          case "--tuned" -> a.tuned = true;
          case "--defaults" -> a.tuned = false;
          default -> {
            if (i + 1 >= argv.length) throw new IllegalArgumentException(flag + " needs a value");
            String v = argv[++i];
            switch (flag) {
              case "--bootstrap" -> a.bootstrap = v;
              case "--topic" -> a.topic = v;
              case "--group" -> a.group = v;
              case "--partitions" -> a.partitions = Integer.parseInt(v);
              case "--records" -> a.records = Long.parseLong(v);
              case "--windows" -> a.windows = Long.parseLong(v);
              case "--data-dir" -> a.dataDir = Path.of(v);
              case "--report" -> a.report = Path.of(v);
              case "--guarantee" -> a.guarantee = v;
              case "--store-retention-hours" -> a.retention = Duration.ofHours(Long.parseLong(v));
              default -> throw new IllegalArgumentException("unknown option " + flag);
            }
          }
        }
      }
      if (a.bootstrap == null || a.topic == null || a.group == null || a.report == null) {
        throw new IllegalArgumentException("--bootstrap, --topic, --group and --report are required");
      }
      return a;
    }
  }
}
