import DataMesherStore
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Unmaps the read-only pages (code, constant tables) of the executable and of the libraries it
/// started with from the daemon's address space 2 s after start and then once a minute, so that
/// what stays resident is what the node ran in the last minute, not everything it touched while
/// starting (bench/README.md, section 7).
///
/// The page cache keeps the pages: one used again comes back by a minor fault, without I/O.
/// Only private, read-only mappings with no page of their own are dropped (a relocated page, one
/// the loader wrote, is a private copy, and a mapping with one is left alone), of files mapped
/// when the trimmer was made, which the process never unmaps: every page dropped reads back from
/// the file exactly as it was.
public struct CodePageTrimmer: Service {
    static let firstAfter = Duration.seconds(2)
    static let interval = Duration.seconds(60)

    let logger: Logger
    /// The files mapped when the daemon started: the executable and the libraries it links.
    let files: Set<String>

    public init(logger: Logger) {
        self.logger = logger
        self.files = Set(Self.mappings(smaps: Self.read("/proc/self/maps")).map(\.path).filter { $0.hasPrefix("/") })
    }

    public func run() async throws {
        var wait = Self.firstAfter
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let pause = wait
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            } catch {
                return
            }
            let bytes = Self.trim(files: files)
            logger.trace("code pages unmapped", metadata: ["dm.bytes": "\(bytes)"])
            wait = Self.interval
        }
    }

    /// One mapping of `/proc/self/smaps`.
    struct Mapping: Equatable {
        let start: UInt
        let end: UInt
        let permissions: String
        let path: String
        /// `Anonymous:` in kB: pages of it that are private copies, not the file's.
        var anonymousKiB: Int?
    }

    /// The mappings in `/proc/self/smaps` (or `maps`) text: each header line and its `Anonymous:`
    /// field.
    static func mappings(smaps: String) -> [Mapping] {
        var result: [Mapping] = []
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.first == "Anonymous:", fields.count >= 2, !result.isEmpty {
                result[result.count - 1].anonymousKiB = Int(fields[1])
                continue
            }
            // A header: "start-end perms offset dev inode [path]"; the path may hold spaces.
            guard fields.count >= 5, fields[1].count == 4 else { continue }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16),
                start < end
            else { continue }
            let path = fields.count > 5 ? fields[5...].joined(separator: " ") : ""
            result.append(Mapping(start: start, end: end, permissions: String(fields[1]), path: path))
        }
        return result
    }

    /// The mappings of `files` whose pages read back from them unchanged: private, not writable,
    /// and without a page of their own.
    static func droppable(_ mappings: [Mapping], files: Set<String>) -> [Mapping] {
        mappings.filter {
            files.contains($0.path) && $0.permissions.hasPrefix("r") && $0.permissions.hasSuffix("p")
                && Array($0.permissions)[1] == "-" && $0.anonymousKiB == 0
        }
    }

    /// Unmaps the droppable pages of `files` from this process (MADV_DONTNEED); returns the bytes
    /// of address space covered (0 where there is no `/proc`).
    static func trim(files: Set<String>) -> Int {
        #if os(Linux)
            var covered = 0
            for mapping in droppable(mappings(smaps: read("/proc/self/smaps")), files: files) {
                let size = Int(mapping.end - mapping.start)
                if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), size, MADV_DONTNEED) == 0 {
                    covered += size
                }
            }
            return covered
        #else
            return 0
        #endif
    }

    /// A `/proc` file's text, or "" where it cannot be read.
    static func read(_ path: String) -> String {
        (try? DiskIO.readFile(path, limit: 64 << 20)).flatMap { $0 }.map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
