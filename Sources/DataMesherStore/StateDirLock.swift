#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive `flock` on `<state_dir>/lock`, held for the life of the process, so two daemons
/// never share one state directory (same node ID, two writers). The holder's PID is written into
/// the file so that the second daemon can name it.
public final class StateDirLock: Sendable {
    public struct InUse: Error, CustomStringConvertible {
        public let stateDir: String
        public let pid: Int32?
        public var description: String {
            let holder = pid.map { " (pid \($0))" } ?? ""
            return
                "state_dir \(stateDir) is in use by another data-mesher\(holder); stop it or choose another state_dir"
        }
    }

    public let path: String
    let fd: Int32

    /// Takes the lock or throws `InUse` at once (never waits).
    public init(stateDir: String) throws {
        try DiskIO.makeDirectories(stateDir)
        path = stateDir + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, DiskIO.fileMode)
        guard fd >= 0 else { throw DiskError("open", path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            defer { close(fd) }
            guard code == EWOULDBLOCK else { throw DiskError("flock", path, code: code) }
            throw InUse(stateDir: stateDir, pid: StateDirLock.readPID(fd))
        }
        self.fd = fd
        let text = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0 else {
            close(fd)
            throw DiskError("ftruncate", path)
        }
        do {
            try text.withUnsafeBytes { try DiskIO.writeAll(fd: fd, $0, path: path) }
        } catch {
            close(fd)
            throw error
        }
    }

    static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: [" ", "\n"])
        guard let pid = Int32(text), pid > 0 else { return nil }
        return pid
    }

    deinit { close(fd) }
}
