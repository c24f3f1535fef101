import DataMesherNet
import DataMesherStore
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
    /// there: the folder (made as the daemon would, `mkdir -p`, when missing) must take a new
    /// file. What the check makes it removes again.
    static func stateDirWritable(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else {
                throw CLIError("state_dir: \(path) is not a folder")
            }
            try probeWrite(path)
            // The folders the daemon writes into, where they exist already (made by another user).
            for sub in FileStore.writtenFolders where stat(path + "/" + sub, &info) == 0 {
                try probeWrite(path + "/" + sub)
            }
            return
        }
        let missingCode = errno
        guard missingCode == ENOENT else {
            throw CLIError("state_dir: \(path): \(String(cString: strerror(missingCode)))")
        }
        // The folders the daemon would make, outermost first.
        var missing: [String] = []
        var folder = path
        while !folder.isEmpty && folder != "/" && stat(folder, &info) != 0 {
            missing.insert(folder, at: 0)
            folder = (folder as NSString).deletingLastPathComponent
        }
        var made: [String] = []
        defer { for folder in made.reversed() { rmdir(folder) } }
        for folder in missing {
            guard mkdir(folder, 0o750) == 0 else {
                let code = errno
                throw CLIError(
                    "state_dir: \(path) does not exist and this user (uid \(getuid())) cannot create \(folder): \(String(cString: strerror(code)))"
                )
            }
            made.append(folder)
        }
        try probeWrite(path)
    }

    /// Makes and removes a file in `folder`; throws one line when it cannot.
    static func probeWrite(_ folder: String) throws {
        let probe = folder + (folder.hasSuffix("/") ? "" : "/") + ".dm-check-config-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            let code = errno
            throw CLIError(
                "state_dir: \(folder) is not writable by this user (uid \(getuid())): \(String(cString: strerror(code)))"
            )
        }
        close(fd)
        unlink(probe)
    }

    /// Throws one line when this node's own certificate would be refused by its peers now
    /// (expired, not yet valid, or not signed by a configured CA).
    static func ownCertificate(_ security: ClusterSecurity, path: String?, now: Date) throws {
        guard let problem = security.ownCertificateProblem(now: now) else { return }
        throw CLIError("cluster.encryption.identity_cert: \(path ?? "certificate"): \(problem)")
    }
}
