import DataMesherCore
import Foundation

/// The JSON kept in the records file for one name: the current signed version, its state, and — while an
/// update is being put in place — what it replaces.
struct MetaRecord: Equatable {
    var current: StoredFile
    /// What an update being put in place replaces, so that the startup scan can put it back when
    /// the node stopped before the update was in place; nil once it is (or when not known).
    var replaced: Replaced? = nil
    /// Size, mtime and inode of `files/NAME` as committed; nil when unknown (re-hashed at start).
    var stat: FileStat? = nil

    /// The replaced version, in whatever state it was held.
    var replacedVersion: FileVersion? {
        if case .held(let held)? = replaced { return held.version }
        return nil
    }

    enum Replaced: Equatable {
        /// The name had no record.
        case nothing
        /// The record held before, in any state (content, a deletion, expired, missing).
        case held(StoredFile)
    }

    struct VersionJSON: Codable {
        var kind: String
        var network_id: String
        var name: String
        var timestamp: Int64
        var valid_for: UInt64
        var sha256: String
        var length: UInt64
        var signer: String
        var signature: String

        init(_ version: FileVersion) {
            kind = version.isTombstone ? "tombstone" : "content"
            network_id = version.networkID
            name = version.name.value
            timestamp = version.timestamp
            valid_for = version.validFor
            sha256 = Hex.encode(version.contentSHA256)
            length = version.contentLength
            signer = version.signer.base64
            signature = Base64.encode(version.signature)
        }

        var version: FileVersion? {
            guard let name = try? FileName(name), let sha = Hex.decode(sha256), sha.count == 32,
                let signer = try? SignerKey(base64: signer), let signature = Base64.decode(signature),
                signature.count == FileVersion.signatureLength
            else { return nil }
            let kind: FileKind
            switch self.kind {
            case "content": kind = .content
            case "tombstone": kind = .tombstone
            default: return nil
            }
            return FileVersion(
                kind: kind, networkID: network_id, name: name, timestamp: timestamp, validFor: valid_for,
                contentSHA256: sha, contentLength: length, signer: signer, signature: signature)
        }
    }

    struct RecordJSON: Codable {
        var format: Int
        var state: StoredFile.State
        var version: VersionJSON
        /// The replaced version; its state in `previous_state`, "content" when absent.
        var previous: VersionJSON?
        /// "none" (without `previous`) when the name had no record.
        var previous_state: String?
        var content_stat: FileStat?
    }

    /// The record's JSON: what `JSONEncoder` writes with `.sortedKeys` from `RecordJSON` (the
    /// tests compare the two), without its cost.
    func encoded() -> [UInt8] {
        var record = JSONObjectWriter(escapingSlashes: true)
        if let stat {
            var content = JSONObjectWriter(escapingSlashes: true)
            content.add("inode", stat.inode)
            content.add("mtime_ns", stat.mtime_ns)
            content.add("size", stat.size)
            record.add("content_stat", content)
        }
        record.add("format", 1)
        switch replaced {
        case nil: break
        case .nothing: record.add("previous_state", "none")
        case .held(let held):
            record.add("previous", Self.versionObject(held.version))
            if held.state != .content { record.add("previous_state", held.state.rawValue) }
        }
        record.add("state", current.state.rawValue)
        record.add("version", Self.versionObject(current.version))
        return record.finished()
    }

    static func versionObject(_ version: FileVersion) -> JSONObjectWriter {
        let json = VersionJSON(version)
        var object = JSONObjectWriter(escapingSlashes: true)
        object.add("kind", json.kind)
        object.add("length", json.length)
        object.add("name", json.name)
        object.add("network_id", json.network_id)
        object.add("sha256", json.sha256)
        object.add("signature", json.signature)
        object.add("signer", json.signer)
        object.add("timestamp", json.timestamp)
        object.add("valid_for", json.valid_for)
        return object
    }

    static func decode(_ bytes: [UInt8]) -> MetaRecord? {
        guard let json = try? JSONDecoder().decode(RecordJSON.self, from: Data(bytes)), json.format == 1,
            let version = json.version.version
        else { return nil }
        var replaced: Replaced? = nil
        switch (json.previous, json.previous_state) {
        case (nil, nil): break
        case (nil, "none"): replaced = .nothing
        case (let previous?, let state):
            guard let held = previous.version, let state = StoredFile.State(rawValue: state ?? "content") else {
                return nil
            }
            replaced = .held(StoredFile(version: held, state: state))
        default: return nil
        }
        return MetaRecord(
            current: StoredFile(version: version, state: json.state), replaced: replaced, stat: json.content_stat)
    }
}
