import Crypto

/// What a node holds, in the form anti-entropy needs: the newest version per name, and
/// digests over them that cost O(1) to keep current.
///
/// Each held version hashes to a 16-byte entry hash; a name falls into one of 256 buckets by
/// the first byte of SHA-256(name); a bucket's digest is the XOR of its entry hashes and the
/// root digest is the hash of all bucket digests. Two nodes that agree compare 16 bytes; when
/// they differ they compare buckets, then only the entries of differing buckets.
public struct FileIndex: Sendable {
    public static let bucketCount = 256

    public private(set) var versions: [FileName: FileVersion] = [:]
    /// Versions whose content this node lost (found damaged): not held, so neither in the
    /// digests nor claimed, and members that have one send it again; nothing older is wanted.
    public private(set) var lost: [FileName: FileVersion] = [:]
    /// The bucket digests, 16 bytes each, back to back.
    var buckets = [UInt8](repeating: 0, count: FileIndex.bucketCount * 16)
    /// 16 bytes that are equal on two nodes holding the same versions: the hash of all bucket
    /// digests, hashed again at each change (a stored version, not a packet; a few µs).
    public private(set) var rootDigest = FileIndex.emptyRoot
    static let emptyRoot = FileIndex.root(of: [UInt8](repeating: 0, count: FileIndex.bucketCount * 16))

    public init() {}

    public subscript(name: FileName) -> FileVersion? { versions[name] }

    public static func bucket(of name: FileName) -> Int {
        Int(SHA256.hash(data: Array(name.value.utf8)).first { _ in true } ?? 0)
    }

    static func entryHash(_ version: FileVersion) -> [UInt8] {
        var message = Array(version.name.value.utf8)
        message.append(0)
        message.appendBigEndian(version.timestamp)
        message += version.signature
        return Array(SHA256.hash(data: message).prefix(16))
    }

    static func root(of buckets: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: buckets).prefix(16)) }

    public mutating func set(_ version: FileVersion) {
        place(version)
        rootDigest = FileIndex.root(of: buckets)
    }

    /// Many versions at once (the store's content at start): the root is hashed once.
    public mutating func set(_ many: [FileVersion]) {
        for version in many { place(version) }
        rootDigest = FileIndex.root(of: buckets)
    }

    mutating func place(_ version: FileVersion) {
        if let gone = lost[version.name], !VersionOrder.isNewer(gone, than: version) { lost[version.name] = nil }
        let bucket = FileIndex.bucket(of: version.name)
        if let old = versions[version.name] { xor(bucket, FileIndex.entryHash(old)) }
        versions[version.name] = version
        xor(bucket, FileIndex.entryHash(version))
    }

    public mutating func remove(_ name: FileName) {
        lost[name] = nil
        guard let old = versions.removeValue(forKey: name) else { return }
        xor(FileIndex.bucket(of: name), FileIndex.entryHash(old))
        rootDigest = FileIndex.root(of: buckets)
    }

    /// `version`'s content was lost here: no longer held, unless a newer version is held (or
    /// was lost already).
    public mutating func lose(_ version: FileVersion) {
        if let held = versions[version.name], held != version { return }
        if let gone = lost[version.name], VersionOrder.isNewer(gone, than: version) { return }
        remove(version.name)
        lost[version.name] = version
    }

    /// Whether a version offered for its name is one to take: newer than the one held or, where
    /// that was lost, the lost version itself or a newer one.
    public func wants(_ version: FileVersion) -> Bool {
        wants(version.name, isNewer: { VersionOrder.isNewer(version, than: $0) }, isSame: { $0 == version })
    }

    /// The rule of `wants` for something offered for `name`, given how it compares with a
    /// version held or lost here.
    private func wants(
        _ name: FileName, isNewer: (FileVersion) -> Bool, isSame: (FileVersion) -> Bool
    ) -> Bool {
        if let held = versions[name] { return isNewer(held) }
        if let gone = lost[name] { return isSame(gone) || isNewer(gone) }
        return true
    }

    mutating func xor(_ bucket: Int, _ hash: [UInt8]) {
        for index in 0..<16 { buckets[bucket * 16 + index] ^= hash[index] }
    }

    /// The first 8 bytes of every bucket digest.
    public var bucketDigests: [[UInt8]] { (0..<FileIndex.bucketCount).map { prefix(of: $0) } }

    func prefix(of bucket: Int) -> [UInt8] { Array(buckets[bucket * 16..<bucket * 16 + 8]) }

    /// Buckets whose digests differ from `theirs`.
    public func differingBuckets(_ theirs: [[UInt8]]) -> [Int] {
        guard theirs.count == FileIndex.bucketCount else { return Array(0..<FileIndex.bucketCount) }
        return (0..<FileIndex.bucketCount).filter { prefix(of: $0) != theirs[$0] }
    }

    /// Summaries of the versions in `bucketIndexes`, sorted by name.
    public func summaries(inBuckets bucketIndexes: [Int]) -> [VersionSummary] {
        let wanted = Set(bucketIndexes)
        return versions.values.filter { wanted.contains(FileIndex.bucket(of: $0.name)) }
            .map(VersionSummary.init).sorted { $0.name < $1.name }
    }

    /// Names for which `theirs` lists a version newer than the one held here, or the one lost
    /// here (or newer).
    public func newerElsewhere(_ theirs: [VersionSummary]) -> [VersionSummary] {
        theirs.filter { summary in
            wants(
                summary.name,
                isNewer: {
                    VersionOrder.isNewer(
                        timestamp: summary.timestamp, signaturePrefix: summary.signaturePrefix, than: $0)
                }, isSame: { summary == VersionSummary($0) })
        }
    }
}

/// Enough of a version to tell which of two is newer: name, timestamp, signature prefix.
public struct VersionSummary: Sendable, Equatable {
    public static let signaturePrefixLength = 16
    public var name: FileName
    public var timestamp: Int64
    public var signaturePrefix: [UInt8]

    public init(name: FileName, timestamp: Int64, signaturePrefix: [UInt8]) {
        self.name = name
        self.timestamp = timestamp
        self.signaturePrefix = signaturePrefix
    }

    public init(_ version: FileVersion) {
        self.init(name: version.name, timestamp: version.timestamp, signaturePrefix: version.signaturePrefix)
    }
}

extension FileVersion {
    /// The first bytes of its signature that summaries, holding claims and refusals name it by.
    public var signaturePrefix: [UInt8] { Array(signature.prefix(VersionSummary.signaturePrefixLength)) }
}

extension VersionOrder {
    /// Ordering against a summary: equal prefixes count as the same version.
    public static func isNewer(timestamp: Int64, signaturePrefix: [UInt8], than current: FileVersion) -> Bool {
        if timestamp != current.timestamp { return timestamp > current.timestamp }
        return Array(current.signature.prefix(signaturePrefix.count)).lexicographicallyPrecedes(signaturePrefix)
    }
}
