import Crypto

extension NodeID {
    /// The domain separator of node IDs: an ID is the first 16 bytes of
    /// SHA-256("data-mesher/node-id/v1" 0x00 ‖ the node key's 32 raw bytes).
    static let derivationLabel: [UInt8] = Array("data-mesher/node-id/v1".utf8) + [0]

    /// The ID of the member whose ED25519 node key is `publicKey` (32 raw bytes). A member is its
    /// key: nobody can claim an ID without holding the key it was derived from.
    public init(publicKey: [UInt8]) {
        var hasher = SHA256()
        hasher.update(data: NodeID.derivationLabel)
        hasher.update(data: publicKey)
        let digest = Array(hasher.finalize())
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(digest[index])
            low = low << 8 | UInt64(digest[index + 8])
        }
        self.init(high: high, low: low)
    }
}
