import Crypto
import Logging
import Testing

@testable import DataMesherNet

/// `CodePageTrimmer`: which mappings it unmaps, and that a process runs on after it did.
@Suite struct CodePageTrimmerTests {
    static let smaps = """
        55d0c0a00000-55d0c0a3b000 r--p 00000000 fd:01 1311 /opt/dm/bin/data  mesher
        Size:                236 kB
        Rss:                 236 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        55d0c0a3b000-55d0c2000000 r-xp 0003b000 fd:01 1311 /opt/dm/bin/data  mesher (deleted)
        Rss:                9780 kB
        Anonymous:             0 kB
        Swap:                  0 kB
        VmFlags: rd ex mr mw me
        55d0c2000000-55d0c2140000 r--p 015c5000 fd:01 1311 /opt/dm/bin/data  mesher
        Rss:                1272 kB
        Anonymous:          1272 kB
        Swap:                  0 kB
        55d0c2140000-55d0c2500000 rw-p 01705000 fd:01 1311 /opt/dm/bin/data  mesher
        Anonymous:           436 kB
        Swap:                  0 kB
        55d0c2500000-55d0c2600000 r--s 00000000 fd:01 1311 /opt/dm/bin/data  mesher
        Anonymous:             0 kB
        Swap:                  0 kB
        7f00aa000000-7f00aa1c0000 r-xp 00028000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libc.so.6
        Anonymous:             0 kB
        Swap:                  0 kB
        7f00aa1c0000-7f00aa200000 r--p 001e8000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libc.so.6
        Anonymous:             0 kB
        Swap:                 16 kB
        7f00ab000000-7f00ab021000 rw-p 00000000 00:00 0 
        Anonymous:           132 kB
        7ffc11bfe000-7ffc11c00000 r-xp 00000000 00:00 0                          [vdso]
        Anonymous:             0 kB
        Swap:                  0 kB
        7ffc11c00000-7ffc11c01000 r-xp 00000000 fd:01 3333 /usr/lib/libz.so
        7ffc11c01000-ffffffffffff r-xp 00000000 fd:01 notanumber /x
        Anonymous:             0 kB
        Swap:                  0 kB
        """

    static var parsed: [CodePageTrimmer.Mapping] { CodePageTrimmer.mappings(smaps: smaps) }

    @Test func readsEveryMappingWithItsFileAndPrivatePages() {
        let mappings = Self.parsed
        #expect(mappings.count == 10)
        #expect(mappings[0].place.start == 0x55d0_c0a0_0000 && mappings[0].place.end == 0x55d0_c0a3_b000)
        #expect(mappings[0].place.device == "fd:01" && mappings[0].inode == 1311)
        #expect(mappings[0].anonymousKiB == 0 && mappings[0].swapKiB == 0)
        #expect(mappings[2].anonymousKiB == 1272)
        #expect(mappings[6].swapKiB == 16)
        #expect(mappings[7].inode == 0 && mappings[8].inode == 0)
        // No counts read: unknown, so never taken for 0; and the counts after a header that
        // could not be read belong to no mapping.
        #expect(mappings[9].anonymousKiB == nil && mappings[9].swapKiB == nil)
    }

    @Test func unmapsOnlyStartupMappingsOfReadOnlyPagesThatAreAllTheFiles() {
        let startup = Set(Self.parsed.map(\.place))
        let chosen = CodePageTrimmer.droppable(Self.parsed, startup: startup)
        // The executable's head and code (also once the file was replaced) and libc's code; not
        // relocated read-only data, writable data, a shared mapping, a mapping with a page in
        // swap, anonymous memory, the vDSO, or a mapping whose private pages are unknown.
        #expect(chosen.map(\.place.start) == [0x55d0_c0a0_0000, 0x55d0_c0a3_b000, 0x7f00_aa00_0000])
        // A mapping that was not there at start (or not at these addresses) is left alone.
        let later = startup.filter { $0.start != 0x7f00_aa00_0000 }
        #expect(CodePageTrimmer.droppable(Self.parsed, startup: later).count == 2)
    }

    @Test func garbledLinesAreSkipped() {
        let text = "zz-1 r-xp 0 0:0 5 /x\nAnonymous: 0 kB\n10-5 r-xp 0 0:0 5 /x\n1-2 rx 0 0:0 5 /x\n\nSwap: 0 kB\n"
        #expect(CodePageTrimmer.mappings(smaps: text).isEmpty)
    }

    #if os(Linux)
        /// Unmaps this test process's own code and runs code again: the pages come back as they were.
        @Test func theProcessRunsOnAfterItsCodeWasUnmapped() {
            let startup = CodePageTrimmer(logger: Logger(label: "test")).startup
            #expect(!startup.isEmpty)
            let before = SHA256.hash(data: Array("data-mesher".utf8))
            #expect(CodePageTrimmer.trim(startup: startup) > 0)
            #expect(SHA256.hash(data: Array("data-mesher".utf8)) == before)
            #expect(CodePageTrimmer.trim(startup: startup) > 0)
        }
    #endif
}
