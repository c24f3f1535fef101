/// Newest wins (SPEC §1): the later signed timestamp; on a tie, the byte-wise larger signature,
/// so every node picks the same winner. Equal versions are not newer than each other.
public enum VersionOrder {
    public static func isNewer(_ candidate: FileVersion, than current: FileVersion) -> Bool {
        if candidate.timestamp != current.timestamp { return candidate.timestamp > current.timestamp }
        return current.signature.lexicographicallyPrecedes(candidate.signature)
    }
}

extension VersionOrder {
    /// The same order, known before the content arrives (from the upload's headers).
    public static func isNewer(timestamp: Int64, signature: [UInt8], than current: FileVersion) -> Bool {
        if timestamp != current.timestamp { return timestamp > current.timestamp }
        return current.signature.lexicographicallyPrecedes(signature)
    }
}
