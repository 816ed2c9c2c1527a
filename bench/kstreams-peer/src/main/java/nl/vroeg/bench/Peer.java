package nl.vroeg.bench;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.common.metrics.KafkaMetric;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of Vroeg's throughput benchmark: the same job as
 * `vroeg run` on the same signal topic, written the way a Kafka Streams user
 * would write it.
 *
 * <ol>
 *   <li><b>intake</b>: decode and validate each CloudEvent (Jackson, typed), a
 *       bad one to the dead-letter topic with its reason in a header; compute
 *       the household key (HMAC-SHA256 of postcode|number|suffix under the same
 *       secret, the first 16 bytes in hex, as Vroeg) and re-key the signal onto
 *       the household topic (a repartition through Kafka);</li>
 *   <li><b>state</b>: a RocksDB household store with a changelog; apply the
 *       signal (duplicates and signals outside the lookback window are
 *       skipped), compute the rule variables, evaluate rules/regels.yaml's
 *       rules (hand-translated below), open, update or close the case, and
 *       emit a case event; every changed case record goes to a RocksDB case
 *       store with a changelog and to the case topic, as Vroeg's state does;</li>
 *   <li>guarantee: {@code exactly_once_v2}.</li>
 * </ol>
 *
 * <p>Not done, as the benchmark's data never needs them: escalation timers
 * (cases open at the wall clock, their deadlines lie 3 to 14 days later),
 * feedback, the school purpose (off by default in Vroeg too: absence reports
 * count as "purpose disabled"), routing by postcode (one team).
 *
 * <p>Usage: {@code java -jar kstreams-peer.jar BOOTSTRAP PREFIX SIGNALS [THREADS]}
 * with the household secret in {@code VROEG_HOUSEHOLD_SECRET}. Topics:
 * PREFIX.signalen (in), PREFIX.huishoudens (re-keyed), PREFIX.meldingen,
 * PREFIX.dlq, PREFIX.zaken; the script creates them. Prints one line
 * {@code done ...} once all SIGNALS are processed and a commit after that
 * has succeeded, and runs until it is terminated.
 */
public final class Peer {
    static final int MINIMUM_CENT = 7500;
    static final int LOOKBACK_MONTHS = 6;
    static final long MAX_AMOUNT_CENT = 1_000_000_000L;
    static final long DAY_MS = 86_400_000L;
    static final String TEAM = "wijkteam";
    static final String[] PARTNERS = {
        "Energie", "Huur", "Hypotheek", "CAK Zorgverzekeringen", "Zorg", "Water", "DUO",
        "Belastingdienst", "CAK Eigen bijdrage", "Overige", "Dienst Toeslagen"};
    static final int ENERGIE = 0;
    static final String[] STATUSES = {"open", "betalingsregeling", "betaald", "ingetrokken"};
    static final String[] CLOSE_REASONS = {"verlopen", "betalingsregeling", "betaald", "ingetrokken"};
    static final String TYPE_ARREARS = "nl.vroeg.signaal.betalingsachterstand.v1";
    static final String TYPE_ABSENCE = "nl.vroeg.signaal.verzuim.v1";

    static final ObjectMapper JSON = new ObjectMapper();

    // What the run has done, for the line at the end.
    static final AtomicLong forwarded = new AtomicLong();
    static final AtomicLong deadLettered = new AtomicLong();
    static final AtomicLong handled = new AtomicLong();
    static final AtomicLong applied = new AtomicLong();
    static final AtomicLong duplicates = new AtomicLong();
    static final AtomicLong outsideWindow = new AtomicLong();
    static final AtomicLong purposeDisabled = new AtomicLong();
    static final AtomicLong opened = new AtomicLong();
    static final AtomicLong updated = new AtomicLong();
    static final AtomicLong closed = new AtomicLong();

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: kstreams-peer BOOTSTRAP PREFIX SIGNALS [THREADS]");
            System.exit(2);
        }
        long start = System.nanoTime();
        String bootstrap = args[0];
        String prefix = args[1];
        long signals = Long.parseLong(args[2]);
        int threads = args.length > 3 ? Integer.parseInt(args[3]) : 1;
        String secret = System.getenv().getOrDefault("VROEG_HOUSEHOLD_SECRET", "");
        if (secret.isEmpty()) {
            System.err.println("VROEG_HOUSEHOLD_SECRET is not set");
            System.exit(2);
        }

        Topology topology = new Topology();
        topology.addSource("signals", new ByteArrayDeserializer(), new ByteArrayDeserializer(), prefix + ".signalen");
        topology.addProcessor("intake", () -> new Intake(secret.getBytes(StandardCharsets.UTF_8)), "signals");
        topology.addSink("dead-letters", prefix + ".dlq", new ByteArraySerializer(), new ByteArraySerializer(), "intake");
        topology.addSink("to-households", prefix + ".huishoudens", new StringSerializer(), new ByteArraySerializer(), "intake");
        topology.addSource("households", new StringDeserializer(), new ByteArrayDeserializer(), prefix + ".huishoudens");
        topology.addProcessor("state", State::new, "households");
        topology.addStateStore(Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore("huishoudens"), Serdes.String(), Serdes.ByteArray()), "state");
        topology.addStateStore(Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore("zaken"), Serdes.String(), Serdes.ByteArray()), "state");
        topology.addSink("case-events", prefix + ".meldingen", new StringSerializer(), new ByteArraySerializer(), "state");
        topology.addSink("case-records", prefix + ".zaken", new StringSerializer(), new ByteArraySerializer(), "state");

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, "vroeg-peer-" + prefix);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, threads);
        props.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/vroeg-peer-" + prefix);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // As Vroeg's producers: LZ4 on the wire and on the broker's disk.
        props.put(StreamsConfig.producerPrefix("compression.type"), "lz4");

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stop.countDown();
        }));
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            System.exit(1);
            return null;
        });
        streams.start();

        // Done: intake has classified every signal, state has handled every
        // forwarded one, and every thread has committed twice since (a
        // commit is the transaction that makes the results visible).
        while (forwarded.get() + deadLettered.get() < signals || handled.get() < forwarded.get()) {
            Thread.sleep(20);
        }
        double commitsAtDone = commits(streams);
        while (commits(streams) < commitsAtDone + 2 * threads) {
            Thread.sleep(20);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        System.out.printf("done %d signals in %.1f s: %d signals/s; forwarded %d, dead-lettered %d, applied %d, "
                + "duplicate %d, outside the window %d, purpose disabled %d; case events: geopend %d, bijgewerkt %d, "
                + "gesloten %d%n",
            signals, seconds, Math.round(signals / seconds), forwarded.get(), deadLettered.get(), applied.get(),
            duplicates.get(), outsideWindow.get(), purposeDisabled.get(), opened.get(), updated.get(), closed.get());
        System.out.flush();
        stop.await();
    }

    static double commits(KafkaStreams streams) {
        double total = 0;
        for (var e : streams.metrics().entrySet()) {
            if (e.getKey().name().equals("commit-total") && e.getKey().group().equals("stream-thread-metrics")) {
                total += (Double) ((KafkaMetric) e.getValue()).metricValue();
            }
        }
        return total;
    }

    // ---------------------------------------------------------------- intake

    /** A CloudEvent in structured mode; unknown attributes are refused. */
    public static final class Event {
        public String specversion;
        public String id;
        public String source;
        public String type;
        public String time;
        public String datacontenttype;
        public String subject;
        public JsonNode data;
    }

    /** The client of an arrears signal; unknown fields are refused. */
    public static final class Client {
        public String voorletters;
        public String voorvoegsel;
        public String achternaam;
        public String geboortedatum;
        public String straatnaam;
        public String postcode;
        public JsonNode huisnummer;
        public String huisnummertoevoeging;
        public String plaatsnaam;
        public String bsn;
        public String telefoon;
        public String email;
    }

    public static final class ArrearsData {
        public String signaalpartner;
        public String referentie;
        public String status;
        @JsonProperty("bedrag_cent")
        public Long bedragCent;
        public String ontstaansdatum;
        public String signaaldatum;
        public Boolean crisissignaal;
        public Boolean eindelevering;
        public Client client;
    }

    public static final class Pupil {
        public String geboortedatum;
        public String straatnaam;
        public String postcode;
        public JsonNode huisnummer;
        public String huisnummertoevoeging;
        public String plaatsnaam;
    }

    public static final class AbsenceData {
        public String verzuimsoort;
        @JsonProperty("uren_4_weken")
        public Integer uren4Weken;
        public String school;
        public Pupil leerling;
    }

    static final class Invalid extends Exception {
        Invalid(String reason) {
            super(reason, null, false, false);
        }
    }

    /** A decoded signal as it travels on the household topic. */
    static final class Signal {
        boolean arrears;
        String source;
        String id;
        long time;
        int partner;
        String referentie;
        int status;
        long bedragCent;
        long ontstaansdatum;
        long signaaldatum;
        boolean crisis;
        boolean eindelevering;
        long geboortedatum;

        byte[] encode() {
            var bytes = new ByteArrayOutputStream(96);
            try (var out = new DataOutputStream(bytes)) {
                out.writeBoolean(arrears);
                out.writeUTF(source);
                out.writeUTF(id);
                out.writeLong(time);
                if (arrears) {
                    out.writeByte(partner);
                    out.writeUTF(referentie);
                    out.writeByte(status);
                    out.writeLong(bedragCent);
                    out.writeInt((int) ontstaansdatum);
                    out.writeInt((int) signaaldatum);
                    out.writeBoolean(crisis);
                    out.writeBoolean(eindelevering);
                    out.writeInt((int) geboortedatum);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return bytes.toByteArray();
        }

        static Signal decode(byte[] value) {
            try (var in = new DataInputStream(new ByteArrayInputStream(value))) {
                Signal s = new Signal();
                s.arrears = in.readBoolean();
                s.source = in.readUTF();
                s.id = in.readUTF();
                s.time = in.readLong();
                if (s.arrears) {
                    s.partner = in.readByte();
                    s.referentie = in.readUTF();
                    s.status = in.readByte();
                    s.bedragCent = in.readLong();
                    s.ontstaansdatum = in.readInt();
                    s.signaaldatum = in.readInt();
                    s.crisis = in.readBoolean();
                    s.eindelevering = in.readBoolean();
                    s.geboortedatum = in.readInt();
                }
                return s;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    static final class Intake implements Processor<byte[], byte[], Object, byte[]> {
        private final Mac mac;
        private ProcessorContext<Object, byte[]> context;

        Intake(byte[] secret) {
            try {
                mac = Mac.getInstance("HmacSHA256");
                mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            } catch (NoSuchAlgorithmException | InvalidKeyException e) {
                throw new IllegalStateException(e);
            }
        }

        @Override
        public void init(ProcessorContext<Object, byte[]> context) {
            this.context = context;
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            try {
                String[] address = new String[1];
                Signal signal = decode(record.value(), System.currentTimeMillis(), address);
                byte[] digest = mac.doFinal(address[0].getBytes(StandardCharsets.UTF_8));
                String household = HexFormat.of().formatHex(digest, 0, 16);
                context.forward(new Record<Object, byte[]>(household, signal.encode(), record.timestamp()), "to-households");
                forwarded.incrementAndGet();
            } catch (Invalid e) {
                Record<Object, byte[]> dead = new Record<Object, byte[]>(record.key(), record.value(), record.timestamp());
                dead.headers().add("vroeg.reden", e.getMessage().getBytes(StandardCharsets.UTF_8));
                context.forward(dead, "dead-letters");
                deadLettered.incrementAndGet();
            }
        }

        static Signal decode(byte[] value, long now, String[] address) throws Invalid {
            if (value == null) {
                throw new Invalid("empty message");
            }
            Event event;
            try {
                event = JSON.readValue(value, Event.class);
            } catch (IOException e) {
                throw new Invalid("not a CloudEvent: " + e.getMessage().lines().findFirst().orElse(""));
            }
            if (!"1.0".equals(event.specversion)) {
                throw new Invalid("specversion: expected \"1.0\"");
            }
            if (event.id == null || event.id.isEmpty() || event.id.length() > 256) {
                throw new Invalid("id: must be 1 to 256 characters");
            }
            if (event.source == null || !event.source.startsWith("urn:") || event.source.length() < 5
                || event.source.length() > 256) {
                throw new Invalid("source: must be a URN");
            }
            if (event.datacontenttype != null
                && !event.datacontenttype.split(";")[0].trim().equalsIgnoreCase("application/json")) {
                throw new Invalid("datacontenttype: expected application/json");
            }
            long time;
            try {
                time = OffsetDateTime.parse(event.time).toInstant().toEpochMilli();
            } catch (DateTimeParseException | NullPointerException e) {
                throw new Invalid("time: expected an RFC 3339 timestamp");
            }
            if (time > now + DAY_MS) {
                throw new Invalid("time: lies in the future");
            }
            if (event.data == null || !event.data.isObject()) {
                throw new Invalid("data: expected an object");
            }
            Signal s = new Signal();
            s.source = event.source;
            s.id = event.id;
            s.time = time;
            if (TYPE_ARREARS.equals(event.type)) {
                decodeArrears(s, treeToValue(event.data, ArrearsData.class), address);
            } else if (TYPE_ABSENCE.equals(event.type)) {
                decodeAbsence(s, treeToValue(event.data, AbsenceData.class), address);
            } else {
                throw new Invalid("type: unknown signal type");
            }
            return s;
        }

        static <T> T treeToValue(JsonNode data, Class<T> type) throws Invalid {
            try {
                return JSON.treeToValue(data, type);
            } catch (JsonProcessingException e) {
                throw new Invalid("data: " + e.getOriginalMessage());
            }
        }

        static void decodeArrears(Signal s, ArrearsData a, String[] address) throws Invalid {
            s.arrears = true;
            s.partner = indexOf(PARTNERS, required(a.signaalpartner, "signaalpartner"), "signaalpartner: unknown partner type");
            s.referentie = text(a.referentie, "referentie");
            s.status = indexOf(STATUSES, required(a.status, "status"), "status: unknown");
            if (a.bedragCent == null) {
                throw new Invalid("data.bedrag_cent: required field is missing");
            }
            if (a.bedragCent < 0 || a.bedragCent > MAX_AMOUNT_CENT) {
                throw new Invalid("data.bedrag_cent: negative or implausible");
            }
            s.bedragCent = a.bedragCent;
            s.ontstaansdatum = day(a.ontstaansdatum, "ontstaansdatum");
            s.signaaldatum = day(a.signaaldatum, "signaaldatum");
            if (s.signaaldatum > Math.floorDiv(s.time, DAY_MS) + 1) {
                throw new Invalid("data.signaaldatum: after the event time");
            }
            if (s.ontstaansdatum > s.signaaldatum) {
                throw new Invalid("data.ontstaansdatum: after signaaldatum");
            }
            if (a.crisissignaal == null) {
                throw new Invalid("data.crisissignaal: required field is missing");
            }
            s.crisis = a.crisissignaal;
            s.eindelevering = a.eindelevering != null && a.eindelevering;
            if (s.eindelevering && s.partner != ENERGIE) {
                throw new Invalid("data.eindelevering: applies to Energie only");
            }
            Client c = a.client;
            if (c == null) {
                throw new Invalid("data.client: required field is missing");
            }
            s.geboortedatum = day(c.geboortedatum, "client.geboortedatum");
            if (s.geboortedatum > s.signaaldatum) {
                throw new Invalid("data.client.geboortedatum: after signaaldatum");
            }
            text(c.voorletters, "client.voorletters");
            text(c.achternaam, "client.achternaam");
            if (c.bsn != null && !elfproef(c.bsn)) {
                throw new Invalid("data.client.bsn: not a valid BSN");
            }
            address[0] = address(c.postcode, c.huisnummer, c.huisnummertoevoeging, c.straatnaam, c.plaatsnaam);
        }

        static void decodeAbsence(Signal s, AbsenceData a, String[] address) throws Invalid {
            s.arrears = false;
            String soort = required(a.verzuimsoort, "verzuimsoort");
            if (!soort.equals("ongeoorloofd") && !soort.equals("langdurig") && !soort.equals("luxe")) {
                throw new Invalid("data.verzuimsoort: unknown");
            }
            if (a.uren4Weken == null || a.uren4Weken < 0 || a.uren4Weken > 200) {
                throw new Invalid("data.uren_4_weken: must be between 0 and 200 hours");
            }
            String school = required(a.school, "school");
            if (!school.matches("[0-9]{2}[A-Za-z]{2}([0-9]{2})?")) {
                throw new Invalid("data.school: expected a BRIN code");
            }
            Pupil p = a.leerling;
            if (p == null) {
                throw new Invalid("data.leerling: required field is missing");
            }
            if (day(p.geboortedatum, "leerling.geboortedatum") > Math.floorDiv(s.time, DAY_MS)) {
                throw new Invalid("data.leerling.geboortedatum: after the event time");
            }
            address[0] = address(p.postcode, p.huisnummer, p.huisnummertoevoeging, p.straatnaam, p.plaatsnaam);
        }

        /** The canonical address the household key is computed over: postcode|number|suffix. */
        static String address(String postcodeRaw, JsonNode number, String suffixRaw, String street, String town)
            throws Invalid {
            String postcode = required(postcodeRaw, "postcode").replaceAll("\\s", "").toUpperCase();
            if (!postcode.matches("[1-9][0-9]{3}[A-Z]{2}") || postcode.endsWith("SA") || postcode.endsWith("SD")
                || postcode.endsWith("SS")) {
                throw new Invalid("postcode: expected a Dutch postcode");
            }
            long nr;
            String suffix = null;
            if (number != null && number.isIntegralNumber()) {
                nr = number.asLong();
            } else if (number != null && number.isTextual()) {
                String raw = number.asText().trim();
                int digits = 0;
                while (digits < raw.length() && Character.isDigit(raw.charAt(digits))) {
                    digits++;
                }
                if (digits == 0 || digits > 5) {
                    throw new Invalid("huisnummer: expected a house number");
                }
                nr = Long.parseLong(raw.substring(0, digits));
                suffix = normaliseSuffix(raw.substring(digits));
            } else {
                throw new Invalid("huisnummer: expected a whole number");
            }
            if (nr < 1 || nr > 99_999) {
                throw new Invalid("huisnummer: must be a whole number from 1 to 99999");
            }
            if (suffixRaw != null) {
                suffix = normaliseSuffix(suffixRaw);
            }
            text(street, "straatnaam");
            text(town, "plaatsnaam");
            return postcode + "|" + nr + "|" + (suffix == null ? "" : suffix);
        }

        static String normaliseSuffix(String raw) {
            StringBuilder out = new StringBuilder();
            raw.codePoints().filter(Character::isLetterOrDigit).forEach(c -> out.append(new String(Character.toChars(c)).toUpperCase()));
            return out.length() == 0 ? null : out.toString();
        }

        static boolean elfproef(String bsn) {
            if (!bsn.matches("[0-9]{9}")) {
                return false;
            }
            int sum = 0;
            for (int i = 0; i < 8; i++) {
                sum += (9 - i) * (bsn.charAt(i) - '0');
            }
            sum -= bsn.charAt(8) - '0';
            return sum % 11 == 0 && sum != 0;
        }

        static String required(String value, String field) throws Invalid {
            if (value == null) {
                throw new Invalid("data." + field + ": required field is missing");
            }
            return value;
        }

        static String text(String value, String field) throws Invalid {
            if (required(value, field).isBlank() || value.length() > 200) {
                throw new Invalid("data." + field + ": must be 1 to 200 characters");
            }
            return value;
        }

        static int indexOf(String[] names, String value, String reason) throws Invalid {
            for (int i = 0; i < names.length; i++) {
                if (names[i].equals(value)) {
                    return i;
                }
            }
            throw new Invalid("data." + reason);
        }

        static long day(String value, String field) throws Invalid {
            try {
                return LocalDate.parse(required(value, field)).toEpochDay();
            } catch (DateTimeParseException e) {
                throw new Invalid("data." + field + ": expected a date (YYYY-MM-DD)");
            }
        }
    }

    // ----------------------------------------------------------------- state

    static final class Arrears {
        String source, id, referentie;
        int partner, status;
        long bedragCent, ontstaansdatum, signaaldatum, time;
        boolean crisis, eindelevering;

        int compareTimeTo(Arrears o) {
            int c = Long.compare(signaaldatum, o.signaaldatum);
            return c != 0 ? c : Long.compare(time, o.time);
        }

        int compareOrder(Arrears o) {
            int c = Long.compare(signaaldatum, o.signaaldatum);
            if (c == 0) c = Long.compare(time, o.time);
            if (c == 0) c = source.compareTo(o.source);
            if (c == 0) c = id.compareTo(o.id);
            return c;
        }
    }

    static final class Case {
        String id;
        int episode;
        long openedAt;
        int prioriteit;
        int seq;
        String werkbak = "";
        /** Rule id to (categorie, prioriteit). */
        TreeMap<String, Object[]> rules = new TreeMap<>();
        TreeSet<String> signals = new TreeSet<>();
    }

    /** A household: its signals in the lookback window, its open case, and the age of its newest payer. */
    static final class Household {
        List<Arrears> arrears = new ArrayList<>();
        Case current;
        int episodes;
        long contactBorn = Long.MIN_VALUE;

        byte[] encode() {
            var bytes = new ByteArrayOutputStream(256);
            try (var out = new DataOutputStream(bytes)) {
                out.writeShort(arrears.size());
                for (Arrears a : arrears) {
                    out.writeUTF(a.source);
                    out.writeUTF(a.id);
                    out.writeUTF(a.referentie);
                    out.writeByte(a.partner);
                    out.writeByte(a.status);
                    out.writeLong(a.bedragCent);
                    out.writeInt((int) a.ontstaansdatum);
                    out.writeInt((int) a.signaaldatum);
                    out.writeLong(a.time);
                    out.writeBoolean(a.crisis);
                    out.writeBoolean(a.eindelevering);
                }
                out.writeInt(episodes);
                out.writeLong(contactBorn);
                out.writeBoolean(current != null);
                if (current != null) {
                    Case c = current;
                    out.writeUTF(c.id);
                    out.writeInt(c.episode);
                    out.writeLong(c.openedAt);
                    out.writeByte(c.prioriteit);
                    out.writeInt(c.seq);
                    out.writeUTF(c.werkbak);
                    out.writeShort(c.rules.size());
                    for (var r : c.rules.entrySet()) {
                        out.writeUTF(r.getKey());
                        out.writeUTF((String) r.getValue()[0]);
                        out.writeByte((Integer) r.getValue()[1]);
                    }
                    out.writeShort(c.signals.size());
                    for (String s : c.signals) {
                        out.writeUTF(s);
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return bytes.toByteArray();
        }

        static Household decode(byte[] value) {
            Household h = new Household();
            if (value == null) {
                return h;
            }
            try (var in = new DataInputStream(new ByteArrayInputStream(value))) {
                int n = in.readShort();
                for (int i = 0; i < n; i++) {
                    Arrears a = new Arrears();
                    a.source = in.readUTF();
                    a.id = in.readUTF();
                    a.referentie = in.readUTF();
                    a.partner = in.readByte();
                    a.status = in.readByte();
                    a.bedragCent = in.readLong();
                    a.ontstaansdatum = in.readInt();
                    a.signaaldatum = in.readInt();
                    a.time = in.readLong();
                    a.crisis = in.readBoolean();
                    a.eindelevering = in.readBoolean();
                    h.arrears.add(a);
                }
                h.episodes = in.readInt();
                h.contactBorn = in.readLong();
                if (in.readBoolean()) {
                    Case c = new Case();
                    c.id = in.readUTF();
                    c.episode = in.readInt();
                    c.openedAt = in.readLong();
                    c.prioriteit = in.readByte();
                    c.seq = in.readInt();
                    c.werkbak = in.readUTF();
                    int rules = in.readShort();
                    for (int i = 0; i < rules; i++) {
                        c.rules.put(in.readUTF(), new Object[] {in.readUTF(), (int) in.readByte()});
                    }
                    int signals = in.readShort();
                    for (int i = 0; i < signals; i++) {
                        c.signals.add(in.readUTF());
                    }
                    h.current = c;
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return h;
        }

        boolean contains(String source, String id) {
            for (Arrears a : arrears) {
                if (a.id.equals(id) && a.source.equals(source)) {
                    return true;
                }
            }
            return false;
        }

        boolean isLatest(int i) {
            Arrears r = arrears.get(i);
            for (int j = i + 1; j < arrears.size(); j++) {
                Arrears o = arrears.get(j);
                if (o.source.equals(r.source) && o.referentie.equals(r.referentie)) {
                    return false;
                }
            }
            return true;
        }

        List<Arrears> open(long windowStart) {
            List<Arrears> out = new ArrayList<>();
            for (int i = 0; i < arrears.size(); i++) {
                Arrears r = arrears.get(i);
                if (r.status == 0 && r.signaaldatum >= windowStart && isLatest(i)) {
                    out.add(r);
                }
            }
            return out;
        }
    }

    /** A rule of rules/regels.yaml that held. */
    record Fired(String id, String categorie, int prioriteit) {}

    static final class State implements Processor<String, byte[], String, byte[]> {
        private ProcessorContext<String, byte[]> context;
        private KeyValueStore<String, byte[]> households;
        private KeyValueStore<String, byte[]> cases;
        private final String regelset = "regels.yaml";

        @Override
        public void init(ProcessorContext<String, byte[]> context) {
            this.context = context;
            this.households = context.getStateStore("huishoudens");
            this.cases = context.getStateStore("zaken");
        }

        @Override
        public void process(Record<String, byte[]> record) {
            long now = System.currentTimeMillis();
            Signal s = Signal.decode(record.value());
            String key = record.key();
            Household h = Household.decode(households.get(key));
            try {
                step(key, h, s, now, record.timestamp());
            } finally {
                handled.incrementAndGet();
            }
        }

        void step(String key, Household h, Signal s, long now, long timestamp) {
            if (h.contains(s.source, s.id)) {
                duplicates.incrementAndGet();
                return;
            }
            long today = Math.floorDiv(now, DAY_MS);
            long windowStart = LocalDate.ofEpochDay(today).minusMonths(LOOKBACK_MONTHS).toEpochDay();
            if (!s.arrears) {
                purposeDisabled.incrementAndGet();
                return;
            }
            if (s.signaaldatum < windowStart) {
                outsideWindow.incrementAndGet();
                return;
            }
            applied.incrementAndGet();
            Arrears a = new Arrears();
            a.source = s.source;
            a.id = s.id;
            a.referentie = s.referentie;
            a.partner = s.partner;
            a.status = s.status;
            a.bedragCent = s.bedragCent;
            a.ontstaansdatum = s.ontstaansdatum;
            a.signaaldatum = s.signaaldatum;
            a.time = s.time;
            a.crisis = s.crisis;
            a.eindelevering = s.eindelevering;
            int pos = 0;
            while (pos < h.arrears.size() && h.arrears.get(pos).compareOrder(a) < 0) {
                pos++;
            }
            boolean newest = pos == h.arrears.size();
            h.arrears.add(pos, a);
            if (newest || h.contactBorn == Long.MIN_VALUE) {
                h.contactBorn = s.geboortedatum;
            }
            // Evaluate: expire, then the variables and the rules.
            h.arrears.removeIf(r -> r.signaaldatum < windowStart);
            List<Arrears> open = h.open(windowStart);
            if (h.current == null && open.isEmpty()) {
                h.contactBorn = Long.MIN_VALUE;
            }
            List<Map.Entry<String, byte[]>> events = new ArrayList<>(1);
            if (open.isEmpty()) {
                if (h.current != null) {
                    Case c = h.current;
                    h.current = null;
                    h.contactBorn = Long.MIN_VALUE;
                    c.seq++;
                    events.add(event(key, c, "gesloten", now, null, CLOSE_REASONS[s.status]));
                    closed.incrementAndGet();
                }
            } else {
                decide(key, h, open, today, windowStart, now, events);
            }
            households.put(key, h.encode());
            for (var e : events) {
                context.forward(new Record<>(e.getKey(), e.getValue(), timestamp), "case-events");
            }
            if (!events.isEmpty()) {
                Case c = h.current;
                String caseId = events.get(0).getKey();
                byte[] caseRecord = caseRecord(key, caseId, c, now);
                cases.put(caseId, caseRecord);
                context.forward(new Record<>(caseId, caseRecord, timestamp), "case-records");
            }
        }

        void decide(String key, Household h, List<Arrears> open, long today, long windowStart, long now,
                    List<Map.Entry<String, byte[]>> events) {
            // The variables the rules read (docs/rules.md).
            int partnersOpen = 0;
            int partners30d = 0;
            boolean crisis = false;
            boolean eindelevering = false;
            for (Arrears r : open) {
                crisis |= r.crisis;
                eindelevering |= r.eindelevering;
                if (r.bedragCent >= MINIMUM_CENT) {
                    partnersOpen |= 1 << r.partner;
                    if (r.signaaldatum >= today - 30) {
                        partners30d |= 1 << r.partner;
                    }
                }
            }
            int aantalPartnersOpen = Integer.bitCount(partnersOpen);
            int aantalPartners30d = Integer.bitCount(partners30d);
            Arrears newest = null;
            for (Arrears r : h.arrears) {
                if (r.signaaldatum >= windowStart) {
                    newest = r;
                }
            }
            boolean herhaling = false;
            boolean gestegen = false;
            boolean eerder = false;
            if (newest != null) {
                for (int i = h.arrears.size() - 1; i >= 0; i--) {
                    Arrears p = h.arrears.get(i);
                    if (p.source.equals(newest.source) && !p.id.equals(newest.id) && p.compareTimeTo(newest) <= 0) {
                        herhaling = true;
                        gestegen = newest.bedragCent > p.bedragCent;
                        break;
                    }
                }
                for (Arrears r : h.arrears) {
                    if (r.signaaldatum >= windowStart && r.signaaldatum < newest.signaaldatum - 30) {
                        eerder = true;
                        break;
                    }
                }
            }
            long leeftijd = 0;
            if (h.contactBorn != Long.MIN_VALUE) {
                LocalDate born = LocalDate.ofEpochDay(h.contactBorn);
                LocalDate t = LocalDate.ofEpochDay(today);
                leeftijd = t.getYear() - born.getYear();
                if (t.getMonthValue() < born.getMonthValue()
                    || (t.getMonthValue() == born.getMonthValue() && t.getDayOfMonth() < born.getDayOfMonth())) {
                    leeftijd--;
                }
                leeftijd = Math.max(0, leeftijd);
            }

            // rules/regels.yaml.
            List<Fired> fired = new ArrayList<>(4);
            if (crisis || eindelevering) fired.add(new Fired("crisis", "crisis", 9));
            if (aantalPartners30d >= 2) fired.add(new Fired("meervoudig", "meervoudig", 6));
            if (aantalPartnersOpen >= 1 && eerder) fired.add(new Fired("opeenvolgend", "opeenvolgend", 5));
            if (aantalPartnersOpen >= 1) fired.add(new Fired("enkelvoudig", "enkelvoudig", 3));
            boolean suppressed = herhaling && !gestegen && !crisis && !eindelevering;
            String werkbak = crisis || eindelevering ? "crisis" : leeftijd > 0 && leeftijd < 27 ? "jongeren" : null;
            if (fired.isEmpty() || suppressed) {
                return;
            }
            int top = 0;
            for (Fired f : fired) {
                top = Math.max(top, f.prioriteit());
            }
            String kind;
            Case c = h.current;
            if (c == null) {
                h.episodes++;
                c = new Case();
                c.id = key + "-" + h.episodes;
                c.episode = h.episodes;
                c.openedAt = now;
                c.prioriteit = top;
                h.current = c;
                kind = "geopend";
            } else {
                boolean newRule = false;
                for (Fired f : fired) {
                    newRule |= !c.rules.containsKey(f.id());
                }
                if (!newRule && top <= c.prioriteit) {
                    for (Arrears r : open) {
                        c.signals.add(r.source + " " + r.id);
                    }
                    return;
                }
                kind = "bijgewerkt";
            }
            c.prioriteit = Math.max(c.prioriteit, top);
            c.werkbak = werkbak == null ? "regulier" : werkbak;
            for (Fired f : fired) {
                c.rules.put(f.id(), new Object[] {f.categorie(), f.prioriteit()});
            }
            for (Arrears r : open) {
                c.signals.add(r.source + " " + r.id);
            }
            c.seq++;
            ObjectNode vars = JSON.createObjectNode();
            vars.put("aantal_partners_30d", aantalPartners30d);
            vars.put("aantal_partners_open", aantalPartnersOpen);
            vars.put("bedrag_gestegen", gestegen);
            vars.put("crisis", crisis);
            vars.put("eerder_signaal_6m", eerder);
            vars.put("eindelevering", eindelevering);
            vars.put("herhaling", herhaling);
            vars.put("leeftijd", leeftijd);
            ObjectNode regels = JSON.createObjectNode();
            for (Fired f : fired) {
                regels.putObject(f.id()).put("categorie", f.categorie()).put("prioriteit", f.prioriteit());
            }
            ObjectNode extra = JSON.createObjectNode();
            extra.set("regels", regels);
            extra.set("variabelen", vars);
            events.add(event(key, c, kind, now, extra, null));
            (kind.equals("geopend") ? opened : updated).incrementAndGet();
        }

        Map.Entry<String, byte[]> event(String key, Case c, String kind, long now, ObjectNode extra, String reden) {
            ObjectNode data = JSON.createObjectNode();
            data.put("id", c.id + "-" + c.seq);
            data.put("type", kind);
            data.put("zaak_id", c.id);
            data.put("huishouden", key);
            data.put("wijkteam", TEAM);
            data.put("werkbak", c.werkbak);
            data.put("episode", c.episode);
            data.put("volgnummer", c.seq);
            data.put("tijd", DateTimeFormatter.ISO_INSTANT.format(Instant.ofEpochMilli(now)));
            data.put("prioriteit", c.prioriteit);
            data.put("categorie", mainCategory(c));
            ArrayNode categorieen = data.putArray("categorieen");
            new TreeSet<>(c.rules.values().stream().map(v -> (String) v[0]).toList()).forEach(categorieen::add);
            ArrayNode signalen = data.putArray("signalen");
            for (String s : c.signals) {
                int space = s.indexOf(' ');
                signalen.addObject().put("source", s.substring(0, space)).put("id", s.substring(space + 1));
            }
            if (extra != null) {
                data.setAll(extra);
            }
            if (reden != null) {
                data.put("reden", reden);
            }
            data.put("regelset", regelset);
            ObjectNode cloudEvent = JSON.createObjectNode();
            cloudEvent.put("specversion", "1.0");
            cloudEvent.put("id", c.id + "-" + c.seq);
            cloudEvent.put("source", "urn:vroeg:peer");
            cloudEvent.put("type", "nl.vroeg.zaak." + kind + ".v1");
            cloudEvent.put("time", DateTimeFormatter.ISO_INSTANT.format(Instant.ofEpochMilli(now)));
            cloudEvent.put("subject", c.id);
            cloudEvent.set("data", data);
            try {
                return Map.entry(c.id, JSON.writeValueAsBytes(cloudEvent));
            } catch (JsonProcessingException e) {
                throw new UncheckedIOException(e);
            }
        }

        static String mainCategory(Case c) {
            String best = "";
            int prio = -1;
            for (Object[] v : c.rules.values()) {
                if ((Integer) v[1] > prio) {
                    prio = (Integer) v[1];
                    best = (String) v[0];
                }
            }
            return best;
        }

        /** The case record for the case store and the case topic. */
        byte[] caseRecord(String key, String caseId, Case c, long now) {
            ObjectNode rec = JSON.createObjectNode();
            rec.put("zaak_id", caseId);
            rec.put("huishouden", key);
            rec.put("status", c == null ? "gesloten" : "open");
            rec.put("wijkteam", TEAM);
            rec.put("bijgewerkt", DateTimeFormatter.ISO_INSTANT.format(Instant.ofEpochMilli(now)));
            if (c != null) {
                rec.put("werkbak", c.werkbak);
                rec.put("prioriteit", c.prioriteit);
                rec.put("categorie", mainCategory(c));
                rec.put("geopend", DateTimeFormatter.ISO_INSTANT.format(Instant.ofEpochMilli(c.openedAt)));
                rec.put("volgnummer", c.seq);
                ArrayNode signalen = rec.putArray("signalen");
                c.signals.forEach(signalen::add);
            }
            try {
                return JSON.writeValueAsBytes(rec);
            } catch (JsonProcessingException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
