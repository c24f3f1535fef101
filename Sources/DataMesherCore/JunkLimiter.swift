/// Mutes a source address that sends too much junk (datagrams that fail to authenticate or
/// decode), so a flood from one address costs a dictionary lookup per datagram and leaves the
/// real traffic alone. Pure: the caller passes the time (ns).
public struct JunkLimiter: Sendable {
    /// Junk datagrams tolerated from one address per window.
    public var allowance: Int
    public var window: Int64
    /// How long a source stays muted once over its allowance.
    public var muteFor: Int64
    public static let maxSources = 4096

    struct Source: Sendable {
        var windowStart: Int64
        var junk: Int
        var mutedUntil: Int64
    }

    var sources: [String: Source] = [:]

    public init(allowance: Int = 200, window: Int64 = 1_000_000_000, muteFor: Int64 = 5_000_000_000) {
        self.allowance = allowance
        self.window = window
        self.muteFor = muteFor
    }

    public func isMuted(_ host: String, now: Int64) -> Bool {
        guard let source = sources[host] else { return false }
        return now < source.mutedUntil
    }

    /// Counts one junk datagram; true when this one made the source muted.
    @discardableResult
    public mutating func noteJunk(_ host: String, now: Int64) -> Bool {
        if sources[host] == nil, sources.count >= Self.maxSources {
            sources = sources.filter { now < $0.value.mutedUntil }
            if sources.count >= Self.maxSources { sources.removeAll() }
        }
        var source = sources[host] ?? Source(windowStart: now, junk: 0, mutedUntil: 0)
        if now - source.windowStart >= window {
            source.windowStart = now
            source.junk = 0
        }
        source.junk += 1
        var mutedNow = false
        if source.junk > allowance && now >= source.mutedUntil {
            source.mutedUntil = now + muteFor
            mutedNow = true
        }
        sources[host] = source
        return mutedNow
    }
}
