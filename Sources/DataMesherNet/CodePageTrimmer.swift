import DataMesherStore
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Unmaps read-only file pages (code, constant tables) of the executable and of the libraries
/// it started with from the daemon's address space 2 s after start and then once a minute, so
/// that what stays resident is what the node ran in the last minute, not everything it touched
/// while starting (bench/README.md, section 7).
///
/// The pages stay in the page cache while the machine has room for them: one used again comes
/// back by a minor fault (or, once the kernel has reclaimed it, is read from the file again).
/// Only mappings that were there when the trimmer was made (same addresses, same file: the
/// process never unmaps those) are dropped, and of them only private, read-only ones with no
/// page of their own, in memory or in swap (a relocated page, one the loader wrote, is a private
/// copy, and so is a debugger's breakpoint): every page dropped reads back from the file exactly
/// as it was.
public struct CodePageTrimmer: Service {
    static let firstAfter = Duration.seconds(2)
    static let interval = Duration.seconds(60)

    let logger: Logger
    /// The file mappings there were when the daemon started.
    let startup: Set<Mapping.Place>

    public init(logger: Logger) {
        self.logger = logger
        self.startup = Set(Self.mappings(smaps: Self.read("/proc/self/maps")).filter { $0.inode != 0 }.map(\.place))
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
            // Reading smaps of a process with many mappings takes milliseconds: off the pool
            // that runs the tasks.
            let startup = self.startup
            guard let bytes = try? await Blocking.run({ Self.trim(startup: startup) }) else { return }
            logger.trace("code pages unmapped", metadata: ["dm.bytes": "\(bytes)"])
            wait = Self.interval
        }
    }

    /// One mapping of `/proc/self/smaps` (or `maps`, without the counts).
    struct Mapping: Equatable {
        /// Where a mapping is and which file it maps.
        struct Place: Hashable {
            let start: UInt
            let end: UInt
            let device: String
            let inode: UInt64
        }

        let place: Place
        let permissions: String
        /// `Anonymous:` and `Swap:` in kB: pages of it that are private copies, not the file's,
        /// in memory and swapped out. Nil when not read.
        var anonymousKiB: Int?
        var swapKiB: Int?

        var inode: UInt64 { place.inode }
        var isPrivateReadOnly: Bool {
            let flags = Array(permissions)
            return flags.count == 4 && flags[0] == "r" && flags[1] == "-" && flags[3] == "p"
        }
    }

    /// The mappings in `/proc/self/smaps` (or `maps`) text: each header line and its
    /// `Anonymous:` and `Swap:` fields. Lines after a header that cannot be read belong to none.
    static func mappings(smaps: String) -> [Mapping] {
        var result: [Mapping] = []
        var current: Int?
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let first = fields.first else { continue }
            if first.hasSuffix(":") {
                guard let index = current, fields.count >= 2 else { continue }
                if first == "Anonymous:" { result[index].anonymousKiB = Int(fields[1]) }
                if first == "Swap:" { result[index].swapKiB = Int(fields[1]) }
                continue
            }
            // A header: "start-end perms offset dev inode [path]".
            current = nil
            let bounds = first.split(separator: "-")
            guard fields.count >= 5, fields[1].count == 4, bounds.count == 2,
                let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), start < end,
                let inode = UInt64(fields[4])
            else { continue }
            let place = Mapping.Place(start: start, end: end, device: String(fields[3]), inode: inode)
            result.append(Mapping(place: place, permissions: String(fields[1])))
            current = result.count - 1
        }
        return result
    }

    /// The file mappings of `startup` whose pages read back from their file unchanged: private,
    /// not writable, and without a page of their own in memory or in swap.
    static func droppable(_ mappings: [Mapping], startup: Set<Mapping.Place>) -> [Mapping] {
        mappings.filter {
            $0.inode != 0 && startup.contains($0.place) && $0.isPrivateReadOnly && $0.anonymousKiB == 0
                && $0.swapKiB == 0
        }
    }

    /// Unmaps the droppable pages from this process (MADV_DONTNEED); returns the bytes of
    /// address space covered (0 where there is no `/proc`).
    static func trim(startup: Set<Mapping.Place>) -> Int {
        #if os(Linux)
            var covered = 0
            for mapping in droppable(mappings(smaps: read("/proc/self/smaps")), startup: startup) {
                let size = Int(mapping.place.end - mapping.place.start)
                if madvise(UnsafeMutableRawPointer(bitPattern: mapping.place.start), size, MADV_DONTNEED) == 0 {
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

/// ServiceLifecycle names each service in its log lines: the name, not the mappings.
extension CodePageTrimmer: CustomStringConvertible {
    public var description: String { "CodePageTrimmer" }
}
