/// Limits the expensive path of receiving a sealed datagram: one from a sender (salt) the node
/// does not know yet, which costs a key derivation and a decryption per keyring key. Datagrams
/// of known senders never come here, so authenticated traffic is never slowed or muted, whatever
/// anyone sends "from" its address. Pure: the caller passes the time (ns).
///
/// Each source address gets `perSource` trials per window. Once `maxSources` addresses are being
/// tracked (a flood from many, perhaps spoofed, addresses), an address not tracked yet draws on
/// one global budget of `global` trials per window instead; the table is never emptied to make
/// room, so a flood cannot reset anybody's count.
public struct TrialLimiter: Sendable {
    public var perSource: Int
    public var global: Int
    public var window: Int64
    public static let maxSources = 4096

    struct Source: Sendable {
        var windowStart: Int64
        var trials: Int
    }

    var sources: [String: Source] = [:]
    var globalWindowStart: Int64 = .min
    var globalTrials = 0
    var lastPrune: Int64 = .min

    public init(perSource: Int = 20, global: Int = 500, window: Int64 = 1_000_000_000) {
        self.perSource = perSource
        self.global = global
        self.window = window
    }

    /// Whether a trial for an unknown sender from `host` may run now; counts it if so.
    public mutating func allow(_ host: String, now: Int64) -> Bool {
        if var source = sources[host] {
            if now.subtractingSaturated(source.windowStart) >= window {
                source = Source(windowStart: now, trials: 0)
            }
            guard source.trials < perSource else { return false }
            source.trials += 1
            sources[host] = source
            return true
        }
        if sources.count >= Self.maxSources && now.subtractingSaturated(lastPrune) >= window {
            // Forget only sources whose window has passed (at most once a window, so a flood of
            // newcomers costs a lookup each); while the table stays full, they share the global budget.
            lastPrune = now
            sources = sources.filter { now.subtractingSaturated($0.value.windowStart) < window }
        }
        if sources.count < Self.maxSources {
            sources[host] = Source(windowStart: now, trials: 1)
            return true
        }
        if now.subtractingSaturated(globalWindowStart) >= window {
            globalWindowStart = now
            globalTrials = 0
        }
        guard globalTrials < global else { return false }
        globalTrials += 1
        return true
    }
}
