import Crypto
import Logging
import Testing

@testable import DataMesherNet

/// `CodePageTrimmer`: which mappings it unmaps, and that a process runs on after it did.
@Suite struct CodePageTrimmerTests {
    static let smaps = """
        55d0c0a00000-55d0c0a3b000 r--p 00000000 fd:01 1311 /opt/dm/bin/data mesher
        Size:                236 kB
        Rss:                 236 kB
        Anonymous:             0 kB
        55d0c0a3b000-55d0c2000000 r-xp 0003b000 fd:01 1311 /opt/dm/bin/data mesher
        Rss:                9780 kB
        Anonymous:             0 kB
        VmFlags: rd ex mr mw me
        55d0c2000000-55d0c2140000 r--p 015c5000 fd:01 1311 /opt/dm/bin/data mesher
        Rss:                1272 kB
        Anonymous:          1272 kB
        55d0c2140000-55d0c2500000 rw-p 01705000 fd:01 1311 /opt/dm/bin/data mesher
        Anonymous:           436 kB
        55d0c2500000-55d0c2600000 r--s 00000000 fd:01 1311 /opt/dm/bin/data mesher
        Anonymous:             0 kB
        7f00aa000000-7f00aa1c0000 r-xp 00028000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libc.so.6
        Anonymous:             0 kB
        7f00ab000000-7f00ab021000 rw-p 00000000 00:00 0 
        Anonymous:           132 kB
        7ffc11bfe000-7ffc11c00000 r-xp 00000000 00:00 0                          [vdso]
        Anonymous:             0 kB
        7ffc11c00000-7ffc11c01000 r-xp 00000000 00:00 0 /opt/dm/bin/data mesher
        """

    @Test func readsEveryMappingWithItsPathAndPrivatePages() {
        let mappings = CodePageTrimmer.mappings(smaps: Self.smaps)
        #expect(mappings.count == 9)
        #expect(mappings[0].start == 0x55d0_c0a0_0000 && mappings[0].end == 0x55d0_c0a3_b000)
        #expect(mappings[0].path == "/opt/dm/bin/data mesher" && mappings[0].anonymousKiB == 0)
        #expect(mappings[2].anonymousKiB == 1272)
        #expect(mappings[6].path == "" && mappings[7].path == "[vdso]")
        // No Anonymous: line read: unknown, so never taken for 0.
        #expect(mappings[8].anonymousKiB == nil)
    }

    @Test func unmapsOnlyReadOnlyPagesThatAreAllTheFilesOfTheFilesNamed() {
        let chosen = CodePageTrimmer.droppable(
            CodePageTrimmer.mappings(smaps: Self.smaps), files: ["/opt/dm/bin/data mesher"])
        // The head and the code; not the relocated read-only data, the writable data, a shared
        // mapping, a file not named (libc here), the vDSO, or a mapping whose private pages are
        // unknown.
        #expect(chosen.map(\.permissions) == ["r--p", "r-xp"])
        #expect(chosen.map(\.start) == [0x55d0_c0a0_0000, 0x55d0_c0a3_b000])
    }

    @Test func garbledLinesAreSkipped() {
        let text = "zz-1 r-xp 0 0 0 /x\nAnonymous: 0 kB\n10-5 r-xp 0 0 0 /x\n1-2 rx 0 0 0 /x\n\n"
        #expect(CodePageTrimmer.mappings(smaps: text).isEmpty)
    }

    #if os(Linux)
        /// Unmaps this test process's own code and runs code again: the pages come back from the
        /// page cache as they were.
        @Test func theProcessRunsOnAfterItsCodeWasUnmapped() {
            let files = CodePageTrimmer(logger: Logger(label: "test")).files
            #expect(files.contains { $0.hasSuffix("/libc.so.6") })
            let before = SHA256.hash(data: Array("data-mesher".utf8))
            #expect(CodePageTrimmer.trim(files: files) > 0)
            #expect(SHA256.hash(data: Array("data-mesher".utf8)) == before)
            #expect(CodePageTrimmer.trim(files: files) > 0)
        }
    #endif
}
