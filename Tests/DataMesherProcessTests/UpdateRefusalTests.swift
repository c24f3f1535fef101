import Foundation
import Testing

/// `file update` of a name the node is not configured for: the one-line refusal lists the
/// configured names (a few, then "and N more") and says how to choose one. And what `file list`
/// shows of the versions stored.
@Suite struct UpdateRefusalTests {
    @Test func anUnconfiguredNameListsTheConfiguredOnes() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let names = ["a:1", "a:2", "a:3", "a:4", "a:5", "a:6", "a:7"]
        let daemon = try Daemon(files: Dictionary(uniqueKeysWithValues: names.map { ($0, [key.base64]) }))
        defer { daemon.cleanUp() }
        try daemon.start()
        let file = dir + "/myfile"
        try "x\n".write(toFile: file, atomically: true, encoding: .utf8)

        let defaulted = try daemon.cli(["file", "update", file, "--url", daemon.url, "--key", key.path])
        #expect(defaulted.status != 0)
        let line = defaulted.stderr.trimmingCharacters(in: .newlines)
        #expect(!line.contains("\n"), "\(line)")
        #expect(line.contains("file name \"myfile\" is not configured on this node"), "\(line)")
        #expect(
            line.hasSuffix(
                "configured names: \"a:1\", \"a:2\", \"a:3\", \"a:4\", \"a:5\" and 2 more (the name defaults to the file's base name; choose one with --name NAME)"
            ), "\(line)")

        let named = try daemon.cli(["file", "update", file, "--name", "other", "--url", daemon.url, "--key", key.path])
        #expect(named.status != 0)
        #expect(named.stderr.contains("and 2 more (choose one with --name NAME)"), "\(named.stderr)")

        // The hint is for this refusal only: a configured name is stored.
        let ok = try daemon.cli(["file", "update", file, "--name", "a:3", "--url", daemon.url, "--key", key.path])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    /// `file list` shows when a version expires ("-": never), next to its timestamp.
    @Test func theListShowsWhenAVersionExpires() throws {
        let dir = try ClusterTests.keyDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try TestKey(dir: dir, name: "owner")
        let daemon = try Daemon(files: ["a:1": [key.base64], "a:2": [key.base64]])
        defer { daemon.cleanUp() }
        try daemon.start()
        let file = dir + "/myfile"
        try "x\n".write(toFile: file, atomically: true, encoding: .utf8)
        for (name, validity) in [("a:1", ["--valid-for", "48h"]), ("a:2", [])] {
            let stored = try daemon.cli(
                ["file", "update", file, "--name", name, "--url", daemon.url, "--key", key.path] + validity)
            #expect(stored.status == 0, "\(stored.stderr)")
        }
        let list = try daemon.cli(["file", "list", "--url", daemon.url])
        let rows = list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        try #require(rows.count == 3, "\(list.stdout)")
        #expect(rows[0][4] == "EXPIRES")
        // a:1: its timestamp and expiry are two days apart (same time of day).
        let (stamp, expires) = (String(rows[1][3]), String(rows[1][4]))
        #expect(rows[1][0] == "a:1" && stamp.suffix(10) == expires.suffix(10) && stamp != expires, "\(list.stdout)")
        #expect(rows[2][0] == "a:2" && rows[2][4] == "-", "\(list.stdout)")
    }
}
