import DataMesherConfig
import Testing

@Suite struct TOMLTests {
    @Test func readsEveryValueType() throws {
        let table = try TOMLParser.parse(
            """
            # comment
            \u{FEFF}plain = "a \\"quoted\\" \\u00e9 \\t tab"   # trailing comment
            literal = 'C:\\path'
            multi = \"\"\"
            line one
            line two \\
                continued\"\"\"
            raw = '''
            keep \\n as is'''
            int = -1_000
            hex = 0xff
            oct = 0o17
            bin = 0b101
            float = 6.25e-1
            yes = true
            no = false
            date = 1979-05-27T07:32:00Z
            day = 1979-05-27
            list = [ "a", 'b',
              # comment in an array
              "c", ]
            nested = [[1, 2], ["x"]]
            inline = { a = 1, "b c" = "d" }
            dotted.key = "v"
            [table]
            key = "value"
            [table.sub]
            "quoted key" = 1
            [[items]]
            n = 1
            [[items]]
            n = 2
            """.replacingOccurrences(of: "\u{FEFF}", with: ""))
        #expect(table["plain"] == .string("a \"quoted\" é \t tab"))
        #expect(table["literal"] == .string("C:\\path"))
        #expect(table["multi"] == .string("line one\nline two continued"))
        #expect(table["raw"] == .string("keep \\n as is"))
        #expect(table["int"] == .integer(-1000))
        #expect(table["hex"] == .integer(255) && table["oct"] == .integer(15) && table["bin"] == .integer(5))
        #expect(table["float"] == .float(0.625))
        #expect(table["yes"] == .boolean(true) && table["no"] == .boolean(false))
        #expect(table["date"] == .datetime("1979-05-27T07:32:00Z") && table["day"] == .datetime("1979-05-27"))
        #expect(table["list"] == .array([.string("a"), .string("b"), .string("c")]))
        #expect(table["nested"] == .array([.array([.integer(1), .integer(2)]), .array([.string("x")])]))
        guard case .table(let inline) = table["inline"], case .table(let dotted) = table["dotted"],
            case .table(let named) = table["table"], case .table(let sub) = named["sub"],
            case .array(let items) = table["items"]
        else {
            Issue.record("tables missing")
            return
        }
        #expect(inline["b c"] == .string("d"))
        #expect(dotted["key"] == .string("v"))
        #expect(named["key"] == .string("value"))
        #expect(sub["quoted key"] == .integer(1))
        #expect(items.count == 2)
        #expect(table.keys.first == "plain")
    }

    @Test(arguments: [
        "a = ", "a", "= 1", "a = 1 2", "a = \"open", "a = 'open", "a = \"\"\"open", "a = [1, 2", "a = {b = 1",
        "a = 1\na = 2", "[t]\n[t]", "a = 1\n[a]", "[a]\nb = 1\n[a.b]", "a = {b = 1}\n[a]", "[::1]", "[@]", "[ :]",
        "[[:]]", "[a", "[a]]", "a = 01", "a = 1__0", "a = _1", "a = 0x", "a = 99999999999999999999", "a = 1.",
        "a = .5", "a = tru", "a = \"\\q\"", "a = \"\\uZZZZ\"", "a = \"\\uD800\"", "a = bare",
        "a = 1979-05-27T\u{FFFD}7:32:00Z",
        "a = \"x\u{1}\"", "a.b = 1\n[a]", "a = [1]\n[[a]]", "a = \"line\nbreak\"", "a = 1\r", "a = {b.c = 1}",
        String(repeating: "[", count: 100), "a = " + String(repeating: "[", count: 100), "x = 1 # \u{7f}",
    ])
    func refusesMalformedDocuments(text: String) {
        #expect(throws: TOMLError.self, "\(text.debugDescription)") { try TOMLParser.parse(text) }
    }

    @Test func errorsCarryTheLine() {
        do {
            _ = try TOMLParser.parse("a = 1\nb = 2\nc = [\n1,\n2 3]")
            Issue.record("accepted")
        } catch {
            #expect(error.line == 5, "\(error)")
        }
    }
}
