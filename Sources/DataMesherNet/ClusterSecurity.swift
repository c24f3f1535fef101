@preconcurrency import Crypto
import DataMesherCore
import DataMesherKeys
import Foundation

/// What `[cluster.encryption]` asks of cluster traffic, with its keys loaded: the keyring that
/// seals every datagram and stream, and the node identity (certificate) proved on every stream.
public struct ClusterSecurity: Sendable {
    /// Empty: traffic is not encrypted.
    public let ring: [SymmetricKey]
    public let identity: Identity?

    public struct Identity: Sendable {
        public let key: Curve25519.Signing.PrivateKey
        public let certificate: NodeCertificate
        public let authorities: [Curve25519.Signing.PublicKey]
    }

    public static let none = ClusterSecurity(ring: [], identity: nil)

    public init(ring: [SymmetricKey], identity: Identity?) {
        self.ring = ring
        self.identity = identity
    }

    public var encrypts: Bool { !ring.isEmpty }

    /// Loads every file the section names; errors name the key and the file.
    public static func load(_ config: EncryptionConfig?) throws -> ClusterSecurity {
        guard let config, config.enable else { return .none }
        var ring: [SymmetricKey] = []
        for path in config.keyring {
            do { ring.append(try KeyringFile.read(path: path)) } catch {
                throw SecurityConfigError("cluster.encryption.keyring: \(error)")
            }
        }
        guard let keyPath = config.identityKey, let certPath = config.identityCert else {
            return ClusterSecurity(ring: ring, identity: nil)
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
            ring: ring, identity: Identity(key: key, certificate: certificate, authorities: authorities))
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
