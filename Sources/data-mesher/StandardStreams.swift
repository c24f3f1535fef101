import ArgumentParser
import DataMesherStore

#if canImport(Glibc)
    // `stdout`, a C global, is read only to flush it and check its error flag (no Foundation in
    // this file: its import of Glibc would not be @preconcurrency).
    @preconcurrency import Glibc
#endif

/// stdout and stderr, written without trapping: `FileHandle.write(_: Data)` traps when a write
/// fails (a reader that closed its pipe, a full disk).
enum StandardStreams {
    /// Writes all of `text` to `fd` (`DiskIO.writeAll`: short writes and interruptions are tried
    /// again, a bounded number of times); the errno when it could not.
    @discardableResult
    static func write(_ text: String, to fd: Int32) -> Int32? {
        do {
            try Array(text.utf8).withUnsafeBytes { try DiskIO.writeAll(fd: fd, $0, path: "") }
            return nil
        } catch {
            return (error as? DiskError)?.code ?? EIO
        }
    }

    /// A line for the user; a stderr that cannot take it has nowhere to report to.
    static func error(_ text: String) { write(text, to: STDERR_FILENO) }

    /// Flushes what `print` buffered; the errno when stdout could not take it.
    static func flushOutput() -> Int32? {
        fflush(stdout) == 0 && ferror(stdout) == 0 ? nil : errno
    }

    /// How a command ends when stdout failed with `code`: quietly with 141, as a process stopped by
    /// SIGPIPE does, when the reader closed the pipe; with one line and 1 otherwise.
    static func outputFailed(_ code: Int32) -> ExitCode {
        if code == EPIPE { return ExitCode(141) }
        error("data-mesher: cannot write stdout: \(String(cString: strerror(code)))\n")
        return ExitCode.failure
    }
}
