import DataMesherCore
import DataMesherStore
import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// The node's metrics, through swift-metrics into its own Prometheus registry (one per node,
/// so several nodes can live in one process, as in tests). `GET /metrics` emits the registry.
public final class NodeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    let accepted: Metrics.Counter
    let packetsIn: Metrics.Counter
    let packetsOut: Metrics.Counter
    let bytesIn: Metrics.Counter
    let bytesOut: Metrics.Counter
    let syncs: Metrics.Counter
    let fetches: Metrics.Counter
    let tcpBytesIn: Metrics.Counter
    let tcpBytesOut: Metrics.Counter
    let clockOffset: Metrics.Gauge
    /// TCP bytes in and out, also for `/v1/info` (the Prometheus counters cannot be read back).
    let tcpTotals = NIOLockedValueBox<(in: Int, out: Int)>((0, 0))
    let diskFull: Metrics.Counter
    let files: Metrics.Gauge
    let bytes: Metrics.Gauge
    let tombstones: Metrics.Gauge
    let expired: Metrics.Gauge

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
        accepted = Metrics.Counter(label: "dm_versions_accepted_total", factory: factory)
        packetsIn = Metrics.Counter(label: "dm_gossip_packets_in_total", factory: factory)
        packetsOut = Metrics.Counter(label: "dm_gossip_packets_out_total", factory: factory)
        bytesIn = Metrics.Counter(label: "dm_gossip_bytes_in_total", factory: factory)
        bytesOut = Metrics.Counter(label: "dm_gossip_bytes_out_total", factory: factory)
        syncs = Metrics.Counter(label: "dm_push_pull_total", factory: factory)
        fetches = Metrics.Counter(label: "dm_fetches_total", factory: factory)
        tcpBytesIn = Metrics.Counter(label: "dm_cluster_tcp_bytes_in_total", factory: factory)
        tcpBytesOut = Metrics.Counter(label: "dm_cluster_tcp_bytes_out_total", factory: factory)
        clockOffset = Metrics.Gauge(label: "dm_clock_offset_seconds", factory: factory)
        diskFull = Metrics.Counter(label: "dm_disk_full_total", factory: factory)
        files = Metrics.Gauge(label: "dm_files", factory: factory)
        bytes = Metrics.Gauge(label: "dm_file_bytes", factory: factory)
        tombstones = Metrics.Gauge(label: "dm_tombstones", factory: factory)
        expired = Metrics.Gauge(label: "dm_expired", factory: factory)
    }

    func refused(_ refusal: Refusal) {
        Metrics.Counter(label: "dm_versions_refused_total", dimensions: [("reason", refusal.reason)], factory: factory)
            .increment()
    }

    /// A cluster stream whose handshake completed, by who opened it.
    func openedStream(initiator: Bool) {
        Metrics.Counter(
            label: "dm_cluster_streams_total", dimensions: [("direction", initiator ? "out" : "in")], factory: factory
        ).increment()
    }

    func droppedPacket(_ reason: String) {
        Metrics.Counter(label: "dm_gossip_packets_dropped_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    /// From a version's signed timestamp (its upload) to its acceptance here.
    func propagationDelay(nanoseconds: Int64, origin: String) {
        Metrics.Timer(label: "dm_propagation_delay", dimensions: [("origin", origin)], factory: factory)
            .recordNanoseconds(max(0, nanoseconds))
    }

    /// Bytes read from or written to cluster TCP streams (preambles, records, content).
    func tcpBytes(in count: Int) {
        tcpBytesIn.increment(by: count)
        tcpTotals.withLockedValue { $0.in += count }
    }

    func tcpBytes(out count: Int) {
        tcpBytesOut.increment(by: count)
        tcpTotals.withLockedValue { $0.out += count }
    }

    func refusedStream(_ reason: String) {
        Metrics.Counter(label: "dm_cluster_streams_refused_total", dimensions: [("reason", reason)], factory: factory)
            .increment()
    }

    /// The Prometheus text, with the gauges that describe state brought up to date first.
    /// `certificateSecondsLeft`: seconds until this node's certificate ends (negative once it
    /// has), as `dm_certificate_expiry_seconds`; nil for a node without one (no such line).
    public func render(store: FileStore, members: [MemberInfo], certificateSecondsLeft: Int64? = nil) -> [UInt8] {
        if let certificateSecondsLeft {
            Metrics.Gauge(label: "dm_certificate_expiry_seconds", factory: factory).record(certificateSecondsLeft)
        }
        let all = store.list()
        let served = all.filter(\.isServed)
        files.record(served.count)
        bytes.record(served.reduce(0) { $0 + $1.version.contentLength })
        tombstones.record(all.filter { $0.state == .tombstone }.count)
        expired.record(all.filter { $0.state == .expired }.count)
        for state in [MemberInfo.State.alive, .suspect, .dead, .left] {
            Metrics.Gauge(label: "dm_members", dimensions: [("state", state.rawValue)], factory: factory)
                .record(members.filter { $0.state == state }.count)
        }
        return registry.emitToBuffer()
    }
}
