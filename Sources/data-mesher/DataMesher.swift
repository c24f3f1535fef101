import ArgumentParser
import Foundation

@main
struct DataMesher: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-mesher",
        abstract: "Replicate ED25519-signed files across a cluster of machines.",
        discussion: """
            Every machine runs `data-mesher server`; the other commands talk to a node's local HTTP API
            (default http://localhost:7331) or work with keys.
            """,
        version: "0.1.0",
        subcommands: [
            ServerCommand.self, FileCommand.self, MembersCommand.self, GenerateCommand.self, KeyCommand.self,
            CertificateCommand.self,
        ]
    )
}

/// A failure to report as one sentence on stderr, with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }

    /// The file being uploaded got shorter than it was when opened (whichever way it is sent).
    static let fileChangedWhileUploading = CLIError("the file changed while it was being uploaded")
}

/// Runs a command body; any error becomes one line on stderr and a non-zero exit, never a trace.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch {
        StandardStreams.error("data-mesher: \(describe(error))\n")
        throw ExitCode.failure
    }
    // What `print` buffered must reach stdout too: a full disk is an error, not a silent exit 0.
    if let code = StandardStreams.flushOutput() { throw StandardStreams.outputFailed(code) }
}

func describe(_ error: any Error) -> String { String(describing: error) }
