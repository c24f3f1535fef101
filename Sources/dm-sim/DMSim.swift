import ArgumentParser
import DataMesherCore
import DataMesherSim
import Foundation

@main
struct DMSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dm-sim",
        abstract: "Run N copies of the data-mesher protocol core on a simulated network and clock.",
        discussion: """
            Everything random comes from --seed, so a run replays bit for bit. The last line is
            machine-readable; the exit status is 1 when an invariant broke (the seed is printed).
            See docs/SIMULATION.md.
            """)

    @Option(help: "Number of nodes.") var nodes = 50
    @Option(help: "Probability that a UDP packet is lost (0..1).") var loss = 0.0
    @Option(help: "Probability that a TCP stream (push/pull frame or content fetch) is cut (0..1).")
    var streamCut = 0.0
    @Option(help: "Probability that a push/pull peer stalls 5 s before a frame (0..1).") var streamStall = 0.0
    @Option(help: "One-way latency range, e.g. 1ms..10ms.") var latency = "1ms..10ms"
    @Option(help: "Each node's clock is off by a random amount up to ± this (at most 10m, max_clock_skew).")
    var clockSkew = "0s"
    @Option(help: "This many random nodes have a full disk (every store fails) for 30 s.") var fullDisk = 0
    @Flag(help: "Require node identities: every node admits members only once they proved their ID.")
    var identities = false
    @Option(help: "This many random nodes have an expired certificate (implies --identities).") var expiredCert = 0
    @Option(help: "This many random nodes have a keyring of their own.") var foreignKeyring = 0
    @Flag(help: "Split the cluster in two for a while, then heal it.") var partition = false
    @Option(help: "Crash and restart this many random nodes during the run.") var crash = 0
    @Option(help: "Initial files to spread.") var files = 5
    @Option(help: "Updates (10% of them deletions) during the run.") var updates = 20
    @Option(help: "Forged versions injected (must never be stored).") var forgeries = 3
    @Option(help: "Anti-entropy interval of every node (shorter runs settle sooner).") var pushPull = "30s"
    @Option(help: "Seed of every random choice.") var seed: UInt64 = 1
    @Option(help: "Run this many consecutive seeds starting at --seed (a sweep).") var seeds = 1
    @Flag(help: "Print every false death (time, observer, node).") var verbose = false
    @Option(help: "Only measure the resident bytes a settled core keeps per member entry, with this many members.")
    var memberFootprint: Int?

    func validate() throws {
        guard (1...5000).contains(nodes) else { throw ValidationError("--nodes must be 1...5000") }
        guard (0.0..<1.0).contains(loss) else { throw ValidationError("--loss must be in 0..<1") }
        guard (0.0..<1.0).contains(streamCut), (0.0..<1.0).contains(streamStall) else {
            throw ValidationError("--stream-cut and --stream-stall must be in 0..<1")
        }
        guard parsedLatency() != nil else { throw ValidationError("--latency must look like 1ms..10ms") }
        guard let skew = try? DurationFormat.parse(clockSkew), skew <= 600_000_000_000 else {
            throw ValidationError("--clock-skew must be a duration of at most 10m (the default max_clock_skew)")
        }
        guard let interval = try? DurationFormat.parse(pushPull), interval >= 1_000_000_000 else {
            throw ValidationError("--push-pull must be a duration of at least 1s")
        }
        guard crash >= 0, fullDisk >= 0, expiredCert >= 0, foreignKeyring >= 0, files >= 1, updates >= 0,
            forgeries >= 0, seeds >= 1
        else {
            throw ValidationError("counts must not be negative (and --files at least 1)")
        }
    }

    func parsedLatency() -> (Int64, Int64)? {
        let parts = latency.components(separatedBy: "..")
        guard parts.count == 2, let low = try? DurationFormat.parse(parts[0]),
            let high = try? DurationFormat.parse(parts[1]),
            low <= high
        else { return nil }
        return (Int64(low), Int64(high))
    }

    func run() throws {
        if let members = memberFootprint {
            guard members >= 1, let report = MemberFootprint.measure(members: members) else {
                throw ValidationError("--member-footprint needs at least 1 member and /proc/self/statm")
            }
            print(
                "member_footprint members=\(report.members) cores=\(report.cores)"
                    + String(format: " bytes_per_member=%.0f", report.bytesPerMember)
                    + String(format: " bytes_per_member_alone=%.0f", report.bytesPerMemberAlone))
            return
        }
        var failed: [UInt64] = []
        for offset in 0..<UInt64(seeds) {
            var options = Scenario.Options()
            options.nodes = nodes
            options.loss = loss
            guard let latency = parsedLatency() else { throw ValidationError("--latency must look like 1ms..10ms") }
            (options.latencyMin, options.latencyMax) = latency
            options.streamCut = streamCut
            options.streamStall = streamStall
            options.clockSkew = Int64((try? DurationFormat.parse(clockSkew)) ?? 0)
            options.fullDisks = fullDisk
            options.identities = identities
            options.expiredCertificates = expiredCert
            options.foreignKeyrings = foreignKeyring
            options.partition = partition
            options.crashes = crash
            options.files = files
            options.updates = updates
            options.forgeries = forgeries
            options.seed = seed &+ offset
            options.settings.pushPullInterval = Int64((try? DurationFormat.parse(pushPull)) ?? 30_000_000_000)
            // Elapsed time of the run (the simulation's own clock is simulated).
            let started = ContinuousClock.now
            let report = Scenario(options).run()
            let elapsed = ContinuousClock.now - started
            let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            for violation in report.violations.prefix(20) { print("seed \(options.seed): violation: \(violation)") }
            if verbose {
                for (time, observer, node) in report.falseDeaths {
                    print(String(format: "false death at %.1fs: ", time) + "\(observer) declared \(node) dead")
                }
            }
            let ok = report.violations.isEmpty && report.converged
            if !ok { failed.append(options.seed) }
            let line = [
                "nodes=\(nodes)", String(format: "loss=%.2f", loss), "seed=\(options.seed)", "converged=\(ok)",
                String(format: "rounds_p50=%.1f", report.percentile(0.5)),
                String(format: "rounds_p99=%.1f", report.percentile(0.99)),
                String(format: "rounds_max=%.1f", report.rounds.max() ?? .nan), "false_dead=\(report.falseDead)",
                String(format: "bytes_per_node_per_s=%.0f", report.bytesPerNodePerSecond),
                String(format: "longest_fetch_s=%.2f", report.longestFetch),
                String(format: "wall_s=%.2f", wall), String(format: "sim_s=%.0f", report.simulatedSeconds),
            ].joined(separator: " ")
            if seeds == 1 || !ok { print(line) }
        }
        if seeds > 1 {
            print("sweep: \(seeds) seeds from \(seed), \(seeds - failed.count) passed, \(failed.count) failed")
            if !failed.isEmpty { print("replay a failing seed: dm-sim --seed \(failed[0]) (same other options)") }
        }
        if !failed.isEmpty { throw ExitCode.failure }
    }
}
