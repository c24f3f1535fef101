/// Cluster timing and fan-out. Defaults follow memberlist's LAN profile.
public struct CoreSettings: Sendable, Equatable {
    /// Time between failure probes of one member; default 1 s (ns).
    public var probeInterval: Int64 = 1_000_000_000
    /// How long to wait for a direct ack before asking others; default 500 ms (ns).
    public var probeTimeout: Int64 = 500_000_000
    /// Time between gossip rounds; default 200 ms (ns).
    public var gossipInterval: Int64 = 200_000_000
    /// Members each gossip round (and each eager push) is sent to; default 3.
    public var gossipNodes = 3
    /// Members asked to probe indirectly; default 3.
    public var indirectChecks = 3
    /// Broadcasts are sent retransmitMult · ceil(log10(N+1)) times; default 4.
    public var retransmitMult = 4
    /// Suspicion timeout = suspicionMult · log10(N) · probeInterval at the least; default 4.
    public var suspicionMult = 4
    /// The suspicion timeout starts at this multiple of its minimum; default 6.
    public var suspicionMaxTimeoutMult = 6
    /// Poor local health stretches probe interval and timeout up to this factor; default 8.
    public var awarenessMaxMultiplier = 8
    /// Anti-entropy with one random member this often in a cluster of up to 32 members; default
    /// 30 s (ns). Larger clusters stretch it (`pushPullInterval(members:)`).
    public var pushPullInterval: Int64 = 30_000_000_000
    /// Retry joining this often while no member is known; default 30 s (ns).
    public var joinInterval: Int64 = 30_000_000_000
    /// Bytes of gossip per UDP packet; default 1400.
    public var udpPayload = 1400
    /// Dead members still receive gossip this long, so they can refute; default 30 s (ns).
    public var gossipToTheDead: Int64 = 30_000_000_000
    /// Dead and departed members are forgotten after this long; until then a dead member is
    /// retried (push/pull) every `joinInterval`, so a healed partition merges again; default 24 h (ns).
    public var deadReap: Int64 = 86_400_000_000_000
    /// Members of the cluster as this node sees it, itself included, at most
    /// (`cluster.max_members`); announcements of more are dropped; default 4096.
    public var maxMembers = 4096
    /// Members announced but not yet confirmed by answering a ping, at most; default 1024.
    public var maxUnconfirmed = 1024
    /// New members accepted from one announcing source address per `newMemberWindow`; default 256.
    public var newMembersPerSource = 256
    /// The window of `newMembersPerSource`; default 10 s (ns).
    public var newMemberWindow: Int64 = 10_000_000_000
    /// A new member is pinged this often until it answers; default 5 s (ns).
    public var confirmationRetry: Int64 = 5_000_000_000
    /// A new member that never answered is dropped after this long; default 60 s (ns).
    public var confirmationTimeout: Int64 = 60_000_000_000
    /// Ping requests relayed at once, at most; default 64.
    public var maxRelays = 64

    public init() {}

    /// The anti-entropy interval for a cluster of `members` (this node included): every member
    /// sends its whole member list, so beyond 32 members the interval grows by one
    /// `pushPullInterval` per doubling (memberlist's push/pull scale), keeping the bytes each
    /// node sends for it close to flat: 2× at 64 members, 6× at 1000.
    public func pushPullInterval(members: Int) -> Int64 {
        guard members > 32 else { return pushPullInterval }
        let log2Ceiling = Int64(Int.bitWidth - (members - 1).leadingZeroBitCount)
        let (scaled, overflow) = pushPullInterval.multipliedReportingOverflow(by: log2Ceiling - 4)
        return overflow ? .max : scaled
    }
}
