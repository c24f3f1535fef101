import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// A one-line progress bar on stderr for transfers of several MiB, drawn only when stderr is a
/// terminal (silent in scripts and pipes), at most ten times a second.
final class ProgressBar: Sendable {
    static let threshold = 4 << 20

    struct State {
        var done = 0
        var lastDraw: UInt64 = 0
        var finished = false
    }

    let label: String
    let total: Int
    let started = DispatchTime.now().uptimeNanoseconds
    let state = NIOLockedValueBox(State())

    /// nil when there is nothing worth drawing.
    static func make(_ label: String, total: Int) -> ProgressBar? {
        guard total >= threshold, isatty(STDERR_FILENO) == 1 else { return nil }
        return ProgressBar(label: label, total: total)
    }

    init(label: String, total: Int) {
        self.label = label
        self.total = total
    }

    func advance(by bytes: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        let line: String? = state.withLockedValue { state in
            state.done += bytes
            guard !state.finished, now - state.lastDraw >= 100_000_000 || state.done >= total else { return nil }
            state.lastDraw = now
            return render(done: state.done, now: now)
        }
        if let line { StandardStreams.error(line) }
    }

    func finish() {
        let line: String? = state.withLockedValue { state in
            guard !state.finished else { return nil }
            state.finished = true
            return render(done: state.done, now: DispatchTime.now().uptimeNanoseconds) + "\n"
        }
        if let line { StandardStreams.error(line) }
    }

    func render(done: Int, now: UInt64) -> String {
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let seconds = max(0.001, Double(now - started) / 1e9)
        let mib = { (bytes: Int) in String(format: "%.1f", Double(bytes) / 1_048_576) }
        return "\r\(label) [\(bar)] \(Int(fraction * 100))% \(mib(done))/\(mib(total)) MiB "
            + "\(mib(Int(Double(done) / seconds))) MiB/s\u{1B}[K"
    }
}
