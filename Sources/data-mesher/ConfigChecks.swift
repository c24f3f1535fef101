import DataMesherNet
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Checks of `server --check-config` that need the running system, not just the file: can the
/// daemon write its state_dir, and is its own certificate valid now.
enum ConfigChecks {
    /// Throws one line naming `state_dir` when the daemon (this user) could not keep its state
    /// there: an existing folder must take a new file (made and removed again); a missing one
    /// must be creatable in its nearest existing parent.
    static func stateDirWritable(_ path: String) throws {
        let pid = getpid()
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw CLIError("state_dir: \(path) is not a folder")
            }
            let probe = path + (path.hasSuffix("/") ? "" : "/") + ".dm-check-config-\(pid)"
            let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else {
                let code = errno
                throw CLIError(
                    "state_dir: \(path) is not writable by this user (uid \(getuid())): \(String(cString: strerror(code)))"
                )
            }
            close(fd)
            unlink(probe)
            return
        }
        let missingCode = errno
        guard missingCode == ENOENT else {
            throw CLIError("state_dir: \(path): \(String(cString: strerror(missingCode)))")
        }
        // The daemon makes the folder (mkdir -p): the nearest existing parent must let it.
        var parent = (path as NSString).deletingLastPathComponent
        while !parent.isEmpty && parent != "/" && stat(parent, &info) != 0 {
            parent = (parent as NSString).deletingLastPathComponent
        }
        if parent.isEmpty { parent = "." }
        guard access(parent, W_OK | X_OK) == 0 else {
            let code = errno
            throw CLIError(
                "state_dir: \(path) does not exist and this user (uid \(getuid())) cannot create it in \(parent): \(String(cString: strerror(code)))"
            )
        }
    }

    /// Throws one line when this node's own certificate would be refused by its peers now
    /// (expired, not yet valid, or not signed by a configured CA).
    static func ownCertificate(_ security: ClusterSecurity, path: String?, now: Date) throws {
        guard let problem = security.ownCertificateProblem(now: now) else { return }
        throw CLIError("cluster.encryption.identity_cert: \(path ?? "certificate"): \(problem)")
    }
}
