@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import DataMesherStore
import Foundation

/// What `[cluster.encryption]` asks of cluster traffic, with its keys loaded: the keyring that
/// seals every datagram and stream, the node identity (certificate) proved on every stream, and
/// the node key that the node ID is derived from and that signs the node's claims.
public struct ClusterSecurity: Sendable {
    /// Empty: datagrams are not encrypted (streams always are, without the keyring's key).
    public let ring: [SymmetricKey]
    public let identity: Identity?
    /// With node identities, the certified identity key; otherwise `<state_dir>/node.key`.
    public let nodeKey: NodeKey
    /// Where the node key came from, for people.
    public let nodeKeySource: String
    /// The node key does not exist yet (`--check-config` before the first start): `nodeKey` is
    /// a stand-in, and the node's ID is decided when the daemon makes the key.
    public let nodeKeyIsStandIn: Bool

    public struct Identity: Sendable {
        public let key: Curve25519.Signing.PrivateKey
        public let certificate: NodeCertificate
        public let authorities: [Curve25519.Signing.PublicKey]
    }

    public init(
        ring: [SymmetricKey], identity: Identity?, nodeKey: NodeKey, nodeKeySource: String = "given",
        nodeKeyIsStandIn: Bool = false
    ) {
        self.ring = ring
        self.identity = identity
        self.nodeKey = nodeKey
        self.nodeKeySource = nodeKeySource
        self.nodeKeyIsStandIn = nodeKeyIsStandIn
    }

    /// The node key file in a state directory (PKCS#8 PEM, mode 0600).
    public static func nodeKeyPath(stateDir: String) -> String { stateDir + "/node.key" }

    public var encrypts: Bool { !ring.isEmpty }

    /// Loads every file the section names, and the node key; errors name the key and the file.
    /// Without node identities the node key is `<state_dir>/node.key`, made on first start when
    /// `createNodeKey` (`--check-config` does not write it).
    public static func load(_ config: EncryptionConfig?, stateDir: String, createNodeKey: Bool) throws
        -> ClusterSecurity
    {
        guard let config, config.enable else {
            let (key, source, standIn) = try loadNodeKey(stateDir: stateDir, create: createNodeKey)
            return ClusterSecurity(
                ring: [], identity: nil, nodeKey: key, nodeKeySource: source, nodeKeyIsStandIn: standIn)
        }
        var ring: [SymmetricKey] = []
        for path in config.keyring {
            do { ring.append(try KeyringFile.read(path: path)) } catch {
                throw SecurityConfigError("cluster.encryption.keyring: \(error)")
            }
        }
        guard let keyPath = config.identityKey, let certPath = config.identityCert else {
            let (key, source, standIn) = try loadNodeKey(stateDir: stateDir, create: createNodeKey)
            return ClusterSecurity(
                ring: ring, identity: nil, nodeKey: key, nodeKeySource: source, nodeKeyIsStandIn: standIn)
        }
        let key: Curve25519.Signing.PrivateKey
        do { key = try KeyFile.readPrivateKey(path: keyPath) } catch {
            throw SecurityConfigError("cluster.encryption.identity_key: \(error)")
        }
        let certificate: NodeCertificate
        do { certificate = try KeyFile.readCertificate(path: certPath) } catch {
            throw SecurityConfigError("cluster.encryption.identity_cert: \(error)")
        }
        guard certificate.nodeKey?.rawRepresentation == key.publicKey.rawRepresentation else {
            throw SecurityConfigError(
                "cluster.encryption.identity_cert: \(certPath) is not for the key in identity_key \(keyPath)")
        }
        var authorities: [Curve25519.Signing.PublicKey] = []
        for path in config.certificateAuthorities {
            do { authorities.append(try KeyFile.readPublicKey(path: path)) } catch {
                throw SecurityConfigError("cluster.encryption.certificate_authorities: \(error)")
            }
        }
        return ClusterSecurity(
            ring: ring, identity: Identity(key: key, certificate: certificate, authorities: authorities),
            nodeKey: NodeKey(key), nodeKeySource: "identity_key \(keyPath)")
    }

    /// Reads `<state_dir>/node.key`, or makes it (or, for a check, only a stand-in key in memory:
    /// the last value is true then).
    static func loadNodeKey(stateDir: String, create: Bool) throws -> (NodeKey, String, Bool) {
        let path = nodeKeyPath(stateDir: stateDir)
        if FileManager.default.fileExists(atPath: path) {
            do { return (NodeKey(try KeyFile.readPrivateKey(path: path)), path, false) } catch {
                throw SecurityConfigError("state_dir: node key \(error)")
            }
        }
        let key = Curve25519.Signing.PrivateKey()
        guard create else { return (NodeKey(key), "\(path) (made at first start)", true) }
        do {
            try DiskIO.makeDirectories(stateDir)
            try DiskIO.writeFileAtomically(path, bytes: Array(try KeyPEM.encodePrivateKey(key).utf8), mode: 0o600)
        } catch {
            throw SecurityConfigError("state_dir: cannot write the node key \(path): \(error)")
        }
        return (NodeKey(key), path + " (made now)", false)
    }

    /// One line for `--check-config` and the start-up log.
    public var summary: String {
        guard encrypts else { return "off" }
        var text = "AES-256-GCM, keyring of \(ring.count) key\(ring.count == 1 ? "" : "s")"
        if let identity {
            text +=
                ", identity \"\(identity.certificate.name)\" valid until \(identity.certificate.notValidAfter)"
                + ", \(identity.authorities.count) CA key\(identity.authorities.count == 1 ? "" : "s")"
        } else {
            text += ", no node identity"
        }
        return text
    }

    /// Why this node's own certificate would be refused by its peers right now, if it would.
    public func ownCertificateProblem(now: Date) -> String? {
        guard let identity else { return nil }
        do { _ = try identity.certificate.verify(authorities: identity.authorities, now: now) } catch {
            return error.description
        }
        return nil
    }
}

public struct SecurityConfigError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
