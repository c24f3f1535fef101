#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Group commit of directory fsyncs. A rename is durable once an fsync of its directory that
/// began after the rename has completed; callers that arrive while one is running wait for the
/// next one, which one of them runs for all of them. Concurrent uploads and fetches that each
/// rename into `files/` therefore share its fsyncs instead of queueing one each, and none returns
/// before its own rename is on disk.
final class GroupSync: @unchecked Sendable {  // every field is guarded by `mutex`
    struct Directory {
        /// The number of fsyncs started and completed (each completes before the next starts).
        var started: UInt64 = 0
        var completed: UInt64 = 0
        var running = false
        /// Generations whose fsync failed, with the error (the last few only).
        var failed: [UInt64: Int32] = [:]
        /// Callers waiting; the entry is dropped when none is left.
        var users = 0
    }

    static let shared = GroupSync()

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var directories: [String: Directory] = [:]

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    /// Returns once an fsync of `path` that started after this call began has completed; throws
    /// that fsync's error.
    func sync(_ path: String) throws {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        directories[path, default: Directory()].users += 1
        defer {
            directories[path]?.users -= 1
            if directories[path]?.users == 0 { directories[path] = nil }
        }
        // Any fsync that starts from now on covers this caller's rename.
        let needed = (directories[path]?.started ?? 0) + 1
        while let directory = directories[path], directory.completed < needed {
            if directory.running {
                pthread_cond_wait(changed, mutex)
                continue
            }
            let generation = directory.started + 1
            directories[path]?.started = generation
            directories[path]?.running = true
            pthread_mutex_unlock(mutex)
            let code = Self.fsyncDirectory(path)
            pthread_mutex_lock(mutex)
            directories[path]?.running = false
            directories[path]?.completed = generation
            if code != 0, var failed = directories[path]?.failed {
                failed[generation] = code
                directories[path]?.failed = failed.filter { $0.key + 64 > generation }
            }
            pthread_cond_broadcast(changed)
        }
        if let code = directories[path]?.failed[needed] { throw DiskError("fsync", path, code: code) }
    }

    /// Directories with callers in `sync` now.
    var trackedDirectories: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return directories.count
    }

    /// 0, or the errno of the failing call.
    static func fsyncDirectory(_ path: String) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        return fsync(fd) == 0 ? 0 : errno
    }
}
